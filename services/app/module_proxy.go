package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/proxy/postgres"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/catalogs"
	"github.com/gatehouse/gatehouse/services/revoke"
)

func (a *App) proxyPostgresService() *Service {
	var srv *postgres.Server
	var cache *session.CachingDecider
	var stopFollow context.CancelFunc = func() {}
	return &Service{
		Start: func(ctx context.Context) error {
			pc := a.cfg.Proxy.Postgres
			cfg := postgres.Config{
				Listen: pc.Listen, MaxMessageBytes: pc.MaxMessageBytes, StartupTimeout: pc.StartupTimeout,
				AllowPlaintextTokens: pc.AllowPlaintextTokens,
				Limits:               session.Limits{ResultChunkBytes: a.cfg.Audit.ResultChunkBytes, MaxResultBytes: a.cfg.Audit.MaxResultBytes, MaxSQLBytes: a.cfg.Audit.MaxSQLBytes},
			}
			key, err := a.cfg.Proxy.LoadMaskKey()
			if err != nil {
				return err
			}
			cfg.MaskKey = key
			if pc.TLSCertFile != "" {
				cert, err := tls.LoadX509KeyPair(pc.TLSCertFile, pc.TLSKeyFile)
				if err != nil {
					return fmt.Errorf("proxy.postgres TLS certificate: %w", err)
				}
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"postgresql"}}
			}
			decider, err := session.NewCachingDecider(&session.NATSDecider{NC: a.bus.NC, Timeout: pc.DecisionTimeout},
				a.bus.NC, pc.DecisionCacheTTL, pc.DecisionCacheSize, a.reg, a.component("proxy-postgres"))
			if err != nil {
				return fmt.Errorf("decision cache: %w", err)
			}
			cache = decider
			cfg.CatalogRefresh = pc.CatalogRefresh
			srv = postgres.New(cfg, a.resources, a.verifier, a.pub, decider, a.reg, a.component("proxy-postgres"))
			cats, err := catalogs.Open(ctx, a.bus.JS)
			if err != nil {
				return err
			}
			srv.SetCatalogSink(cats)
			srv.SetApprovals(&postgres.Approvals{JS: a.bus.JS, NC: a.bus.NC, Hint: "approve in Slack or with:"})
			// Revocations are replayed before the proxy admits a session.
			fctx, cancel := context.WithCancel(context.Background())
			stopFollow = cancel
			reg, err := revoke.Follow(fctx, a.bus.JS, a.component("proxy-postgres"), srv.Revoke)
			if err != nil {
				return err
			}
			srv.SetRevocations(reg)
			if err := srv.Listen(); err != nil {
				return err
			}
			a.pgAddr = srv.Addr()
			return nil
		},
		Run: func(ctx context.Context) error { return srv.Serve(ctx) },
		Stop: func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			defer cache.Close()
			defer stopFollow()
			return srv.Shutdown(sctx)
		},
	}
}
