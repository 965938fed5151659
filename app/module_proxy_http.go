package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/proxy/kube"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
)

// proxyHTTPService is the HTTP proxy: resources of type http, and the Kubernetes API
// (type kubernetes) through its profile. Callers reach it over TLS: the configured
// certificate, or a self-signed one made in data_dir.
func (a *App) proxyHTTPService() *Service {
	return a.proxyService("http", func(ctx context.Context, sh proxyShared) (protocolProxy, error) {
		pc := a.cfg.Proxy.HTTP
		cfg := ghttp.Config{
			Listen: pc.Listen, ReadHeaderTimeout: pc.ReadHeaderTimeout, IdleTimeout: pc.IdleTimeout, BodyTimeout: pc.BodyTimeout,
			MaxHeaderBytes: pc.MaxHeaderBytes, MaxBodyBytes: pc.MaxBodyBytes, MaxConnections: pc.MaxConnections,
			Limits: sh.limits, MaskKey: sh.maskKey,
		}
		certFile, keyFile := pc.TLSCertFile, pc.TLSKeyFile
		if !pc.InsecurePlaintext {
			if certFile == "" {
				var err error
				if certFile, keyFile, err = devcert.Ensure(a.cfg.DataDir); err != nil {
					return nil, fmt.Errorf("proxy.http: self-signed certificate: %w", err)
				}
			}
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("proxy.http TLS certificate: %w", err)
			}
			cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		srv := ghttp.New(cfg, a.resources, a.verifier, a.pub, sh.decider, a.reg, a.component("proxy-http"))
		srv.SetProfile("kubernetes", kube.Profile{})
		srv.SetApprovals(&session.Approvals{JS: a.bus.JS, NC: a.bus.NC, Hint: "approve in Slack or with:", Log: a.component("proxy-http")})
		// `gatehouse kubeconfig` learns the gateway's address and certificate here.
		a.registerKubeAPI(func() string {
			if addr := a.ListenAddr("http"); addr != "" {
				return addr
			}
			return pc.Listen
		}, func() ([]byte, error) {
			if certFile == "" {
				return nil, nil
			}
			return os.ReadFile(certFile)
		})
		return srv, nil
	})
}
