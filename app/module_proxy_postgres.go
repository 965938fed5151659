package app

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/gatehouse/gatehouse/proxy/postgres"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/catalogs"
)

// proxyPostgresService is the PostgreSQL proxy: its listener and TLS, the catalogs it
// reads and publishes, and approvals held on the wire.
func (a *App) proxyPostgresService() *Service {
	return a.proxyService("postgres", func(ctx context.Context, sh proxyShared) (protocolProxy, error) {
		pc := a.cfg.Proxy.Postgres
		cfg := postgres.Config{
			Listen: pc.Listen, MaxMessageBytes: pc.MaxMessageBytes, StartupTimeout: pc.StartupTimeout, MaxConnecting: pc.MaxConnecting,
			AllowPlaintextTokens: pc.AllowPlaintextTokens, Limits: sh.limits, MaskKey: sh.maskKey, CatalogRefresh: pc.CatalogRefresh,
			AgentCalls: a.agents,
		}
		if pc.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(pc.TLSCertFile, pc.TLSKeyFile)
			if err != nil {
				return nil, fmt.Errorf("proxy.postgres TLS certificate: %w", err)
			}
			cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"postgresql"}}
		}
		srv := postgres.New(cfg, a.resources, a.verifier, a.pub, sh.decider, a.reg, a.component("proxy-postgres"))
		cats, err := catalogs.Open(ctx, a.bus.JS)
		if err != nil {
			return nil, err
		}
		srv.SetCatalogSink(cats)
		srv.SetApprovals(&session.Approvals{JS: a.bus.JS, NC: a.bus.NC, Hint: "approve in Slack or with:", Log: a.component("proxy-postgres")})
		return srv, nil
	})
}
