package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/proxy/session"
)

// protocolProxy is what the wiring needs of a protocol proxy: listen, serve, its registry
// of live sessions (which follows the revocations and ends sessions by the protocol's own
// Terminate), shut down.
type protocolProxy interface {
	Listen() error
	Addr() string
	Serve(ctx context.Context) error
	Sessions() *session.Registry
	Shutdown(ctx context.Context) error
}

// proxyShared is what every protocol proxy is given: the decider (with the decision
// cache), the audit trail's limits and the mask key.
type proxyShared struct {
	decider session.Decider
	limits  session.Limits
	maskKey []byte
}

// proxyService runs the protocol proxy build makes: the module adds what every proxy has,
// the decision cache (proxy.decision_*), revocations replayed before the proxy admits a
// session, the listener (its bound address kept under the protocol's name) and the
// shutdown.
func (a *App) proxyService(protocol string, build func(ctx context.Context, sh proxyShared) (protocolProxy, error)) *Service {
	var srv protocolProxy
	var cache *session.CachingDecider
	stopFollow := context.CancelFunc(func() {})
	name := "proxy-" + protocol
	return &Service{
		Start: func(ctx context.Context) error {
			pc := a.cfg.Proxy
			key, err := pc.LoadMaskKey()
			if err != nil {
				return err
			}
			if cache, err = session.NewCachingDecider(&session.NATSDecider{NC: a.bus.NC, Timeout: pc.DecisionTimeout},
				// Each proxy of a process has its cache, its metrics labelled with the proxy.
				a.bus.NC, pc.DecisionCacheTTL, pc.DecisionCacheSize, prometheus.WrapRegistererWith(prometheus.Labels{"proxy": protocol}, a.reg), a.component(name)); err != nil {
				return fmt.Errorf("decision cache: %w", err)
			}
			limits := session.Limits{ResultChunkBytes: a.cfg.Audit.ResultChunkBytes, MaxResultBytes: a.cfg.Audit.MaxResultBytes, MaxSQLBytes: a.cfg.Audit.MaxSQLBytes}
			if srv, err = build(ctx, proxyShared{decider: cache, limits: limits, maskKey: key}); err != nil {
				return err
			}
			fctx, cancel := context.WithCancel(context.Background())
			stopFollow = cancel
			if err := srv.Sessions().Follow(fctx, a.bus.JS); err != nil {
				return err
			}
			if err := srv.Listen(); err != nil {
				return err
			}
			a.setListener(protocol, srv.Addr())
			a.registerConnectAPI() // `gatehouse connect` learns the proxies' addresses here
			return nil
		},
		Run: func(ctx context.Context) error { return srv.Serve(ctx) },
		Stop: func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if cache != nil {
				defer cache.Close()
			}
			defer stopFollow()
			if srv == nil {
				return nil
			}
			return srv.Shutdown(sctx)
		},
	}
}
