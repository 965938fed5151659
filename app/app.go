package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only when server.pprof is set
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/embedded"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/desired"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/seal"
	"github.com/gatehouse/gatehouse/sshca"
)

// App is one Gatehouse process running a set of targets.
type App struct {
	cfg *config.Config
	log *slog.Logger
	reg *prometheus.Registry

	echo     *echo.Echo
	httpLn   net.Listener
	httpSrv  *http.Server
	nats     *embedded.Server
	bus      *bus.Bus
	natsURL  string
	verifier *identity.Verifier
	dev      *identity.DevIssuer
	ch       driver.Conn
	pub      *session.Publisher
	// agents are the MCP server's tickets for the PostgreSQL proxy of this process.
	agents *session.AgentCalls
	// listeners are the bound addresses of the protocol proxies, by protocol.
	listenMu  sync.Mutex
	listeners map[string]string
	desired   *desired.Store
	approvals *approvals.Service
	// resources are the resources in force (KV, watched).
	resources *desired.LiveResources

	ready   atomic.Bool
	running []string
	// requested are the targets as asked for (before all is expanded).
	requested []string
}

// New makes an app for cfg. The config must be valid.
func New(cfg *config.Config, log *slog.Logger) *App {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &App{cfg: cfg, log: log, reg: reg, agents: session.NewAgentCalls()}
}

// module is a buildable target: its dependencies and how to make its service.
type module struct {
	deps   []string
	public bool
	help   string
	build  func(a *App) *Service
}

var modules = map[string]module{
	"server":         {build: (*App).serverService},
	"nats":           {public: true, help: "embedded NATS with JetStream (when nats.url is empty; one node of a cluster with nats.server_config)", build: (*App).natsService},
	"bus":            {deps: []string{"nats"}, build: (*App).busService},
	"identity":       {deps: []string{"bus", "server"}, build: (*App).identityService},
	"publisher":      {deps: []string{"bus"}, build: (*App).publisherService},
	"clickhouse":     {build: (*App).clickhouseService},
	"dev-issuer":     {deps: []string{"server"}, public: true, help: "development-only OIDC issuer (never in production)", build: (*App).devIssuerService},
	"desired":        {deps: []string{"bus"}, build: (*App).desiredService},
	"policy":         {deps: []string{"bus", "desired", "identity", "server"}, public: true, help: "decision service (gh.policy.decide) and the policy/resource API", build: (*App).policyService},
	"proxy-postgres": {deps: []string{"bus", "desired", "identity", "publisher", "server"}, public: true, help: "PostgreSQL proxy", build: (*App).proxyPostgresService},
	"proxy-ssh":      {deps: []string{"bus", "desired", "identity", "publisher", "server"}, public: true, help: "SSH proxy (and the CA that signs `gatehouse ssh login` certificates)", build: (*App).proxySSHService},
	"proxy-http":     {deps: []string{"bus", "desired", "identity", "publisher", "server"}, public: true, help: "HTTP proxy: HTTP services and the Kubernetes API", build: (*App).proxyHTTPService},
	"mcp":            {deps: []string{"bus", "desired", "identity", "publisher", "server", "proxy-postgres"}, public: true, help: "MCP server for AI agents (streamable HTTP at mcp.path), through the PostgreSQL proxy of this process", build: (*App).mcpService},
	"approvals":      {deps: []string{"bus", "identity", "server"}, public: true, help: "approvals: state from GH_APPROVALS, API, deadlines", build: (*App).approvalsService},
	"notifier":       {deps: []string{"bus", "server"}, public: true, help: "Slack messages for approvals (slack: in the config), over NATS", build: (*App).notifierService},
	"sinks":          {deps: []string{"bus", "server"}, public: true, help: "push the audit trail to the configured SIEM sinks", build: (*App).sinksService},
	"ingest":         {deps: []string{"bus", "clickhouse", "desired", "identity", "server"}, public: true, help: "JetStream → ClickHouse, and retention", build: (*App).ingestService},
	"query":          {deps: []string{"bus", "clickhouse", "identity", "server"}, public: true, help: "HTTP API: sessions, replay, audit verify, export; the web console", build: (*App).queryService},
	"all":            {deps: []string{"policy", "approvals", "notifier", "proxy-postgres", "proxy-ssh", "proxy-http", "mcp", "ingest", "query", "sinks"}, public: true, help: "every component, NATS embedded unless nats.url is set"},
}

// Targets lists the public targets with their help, sorted.
func Targets() []string {
	var out []string
	for n, m := range modules {
		if m.public {
			out = append(out, fmt.Sprintf("%-15s %s", n, m.help))
		}
	}
	sort.Strings(out)
	return out
}

// resolve returns the modules needed for targets in dependency order.
func resolve(targets []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		m, ok := modules[n]
		if !ok {
			return fmt.Errorf("unknown target %q (gatehouse run --list-targets lists them)", n)
		}
		switch state[n] {
		case 1:
			return fmt.Errorf("dependency cycle at %q", n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, d := range m.deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, t := range targets {
		if err := visit(strings.TrimSpace(t)); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Run runs targets until ctx ends or a component fails.
func (a *App) Run(ctx context.Context, targets []string) error {
	names, err := resolve(targets)
	if err != nil {
		return err
	}
	// The dev issuer is part of `all` when the config enables it; split processes trust the
	// one at identity.dev_issuer_url instead.
	if a.cfg.Identity.DevIssuer && slices.Contains(targets, "all") && !slices.Contains(names, "dev-issuer") {
		names = slices.Insert(names, slices.Index(names, "identity"), "dev-issuer")
	}
	a.running, a.requested = names, targets
	var svcs []*Service
	for _, n := range names {
		if b := modules[n].build; b != nil {
			s := b(a)
			s.Name = n
			svcs = append(svcs, s)
		}
	}
	return runServices(ctx, a.log, svcs, func() {
		a.ready.Store(true)
		a.log.Info("gatehouse ready", "targets", strings.Join(targets, ","), "http", a.HTTPAddr())
	})
}

// Ready reports whether every component has started.
func (a *App) Ready() bool { return a.ready.Load() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// ListenAddr is the bound address of a protocol's proxy ("postgres"; "" when it does not
// run).
func (a *App) ListenAddr(protocol string) string {
	a.listenMu.Lock()
	defer a.listenMu.Unlock()
	return a.listeners[protocol]
}

// AgentCalls are the agent tickets the MCP server of this process issues and its PostgreSQL
// proxy redeems (session.AgentCalls).
func (a *App) AgentCalls() *session.AgentCalls { return a.agents }

func (a *App) setListener(protocol, addr string) {
	a.listenMu.Lock()
	defer a.listenMu.Unlock()
	if a.listeners == nil {
		a.listeners = map[string]string{}
	}
	a.listeners[protocol] = addr
}

// NATSURL is the URL of the NATS the app uses.
func (a *App) NATSURL() string { return a.natsURL }

// DevIssuerURL is the issuer URL of the development issuer of this process.
func (a *App) DevIssuerURL() string {
	if a.cfg.Identity.DevIssuerURL != "" {
		return strings.TrimRight(a.cfg.Identity.DevIssuerURL, "/")
	}
	return "http://" + a.HTTPAddr() + identity.DevIssuerPath
}

func (a *App) component(name string) *slog.Logger { return a.log.With("component", name) }

func (a *App) serverService() *Service {
	return &Service{
		Start: func(ctx context.Context) error {
			ln, err := net.Listen("tcp", a.cfg.Server.HTTPListen)
			if err != nil {
				return fmt.Errorf("http listen %s: %w", a.cfg.Server.HTTPListen, err)
			}
			a.httpLn = ln
			e := echo.New()
			e.HideBanner, e.HidePort = true, true
			e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
			e.GET("/readyz", func(c echo.Context) error {
				if !a.ready.Load() {
					return c.String(http.StatusServiceUnavailable, "starting\n")
				}
				return c.String(http.StatusOK, "ready: "+strings.Join(a.running, ",")+"\n")
			})
			e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{})))
			if a.cfg.Server.Pprof {
				// Profiles and stacks are for someone on this machine: a loopback caller that
				// names a loopback host (not a page under a DNS-rebound name).
				e.GET("/debug/pprof/*", echo.WrapHandler(http.DefaultServeMux), func(next echo.HandlerFunc) echo.HandlerFunc {
					return func(c echo.Context) error {
						host, _, _ := net.SplitHostPort(c.Request().RemoteAddr)
						if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || !identity.LoopbackHost(c.Request().Host) {
							return echo.NewHTTPError(http.StatusForbidden, "/debug/pprof answers loopback callers, for a loopback host, only")
						}
						return next(c)
					}
				})
			}
			a.echo = e
			a.httpSrv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
			return nil
		},
		Run: func(ctx context.Context) error {
			served := make(chan error, 1)
			go func() { served <- a.httpSrv.Serve(a.httpLn) }()
			select {
			case err := <-served:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := a.httpSrv.Shutdown(sctx); err != nil {
				return err
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		Stop: func(context.Context) error {
			if a.ready.Load() {
				return nil // Run has shut the server down
			}
			return a.httpLn.Close()
		},
	}
}

func (a *App) natsService() *Service {
	return &Service{
		Start: func(ctx context.Context) error {
			if url := a.cfg.NATS.ServerURL(); url != "" {
				a.natsURL = url
				return nil
			}
			if conf := a.cfg.NATS.ServerConfig; conf != "" {
				// One node of a cluster (or a server with users and TLS), as the file says.
				srv, err := embedded.StartNode(conf)
				if err != nil {
					return err
				}
				a.nats, a.natsURL = srv, srv.URL()
				a.component("nats").Info("NATS node started", "name", srv.Name(), "url", srv.URL(), "config", conf)
				return nil
			}
			srv, err := embedded.Start(a.cfg.NATS.EmbeddedListen, filepath.Join(a.cfg.DataDir, "jetstream"))
			if err != nil {
				return err
			}
			a.nats, a.natsURL = srv, srv.URL()
			a.component("nats").Info("embedded NATS started", "url", srv.URL(), "store", filepath.Join(a.cfg.DataDir, "jetstream"))
			return nil
		},
		Run: func(ctx context.Context) error { <-ctx.Done(); return nil },
		Stop: func(ctx context.Context) error {
			if a.nats != nil {
				a.nats.Shutdown()
			}
			return nil
		},
	}
}

func (a *App) busService() *Service {
	return &Service{
		Start: func(ctx context.Context) error {
			var extra []nats.Option
			if a.nats != nil {
				// The embedded server is in this process: no loopback TCP between them.
				extra = append(extra, nats.InProcessServer(a.nats))
			}
			b, err := bus.Connect(ctx, a.natsURL, "gatehouse", a.busOptions(), a.component("bus"), extra...)
			if err != nil {
				return err
			}
			a.bus = b
			return nil
		},
		Stop: func(ctx context.Context) error { a.bus.Close(); return nil },
	}
}

// busOptions are the nats section as the bus takes it.
func (a *App) busOptions() bus.Options {
	n := &a.cfg.NATS
	return bus.Options{StreamMaxBytes: n.StreamMaxBytes, DuplicateWindow: n.DuplicateWindow, Replicas: n.Replicas,
		Bind: n.Streams == config.StreamsBind, Security: n.Security()}
}

func (a *App) identityService() *Service {
	var cancel context.CancelFunc
	return &Service{
		Start: func(ctx context.Context) error {
			issuers := slices.Clone(a.cfg.Identity.Issuers)
			if a.cfg.Identity.DevIssuer {
				dev := a.DevIssuerURL()
				for i, is := range issuers {
					if strings.TrimRight(is.Issuer, "/") == dev {
						return fmt.Errorf("identity.issuers[%d].issuer: %q is the development issuer, which dev_issuer: true already trusts; remove one", i, is.Issuer)
					}
				}
				issuers = append(issuers, config.Issuer{Issuer: dev, Audience: identity.DevAudience, GroupsClaim: "groups"})
			}
			if len(issuers) == 0 {
				return errors.New("identity.issuers is empty: no token could ever be accepted")
			}
			var vctx context.Context
			vctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
			a.verifier = identity.NewVerifier(vctx, issuers, a.component("identity"))
			// Where people sign in (gatehouse login), from any process that checks tokens.
			li := sshca.LoginInfo{Issuer: a.cfg.Identity.LoginIssuer(a.DevIssuerURL()), ClientID: a.cfg.Identity.Login.ClientID, Scopes: a.cfg.Identity.Login.Scopes}
			a.echo.GET(LoginPath, func(c echo.Context) error {
				if li.Issuer == "" {
					return echo.NewHTTPError(http.StatusNotFound, "no sign-in issuer is configured (identity.login.issuer)")
				}
				return c.JSON(http.StatusOK, li)
			})
			// Revoked identities are refused by every API of this process, not only by
			// the proxies (an approver revoked must not approve).
			revs, err := bus.FollowRevocations(vctx, a.bus.JS, a.component("identity"), nil)
			if err != nil {
				return err
			}
			a.verifier.UseRevocations(func(id schemas.Identity) (string, bool) {
				rv, ok := revs.Check(time.Now(), schemas.RevokeKindIdentity, schemas.RevocationTargets(id)...)
				return rv.Reason, ok
			})
			return a.useWebSessions(ctx)
		},
		Stop: func(context.Context) error { cancel(); return nil },
	}
}

func (a *App) devIssuerService() *Service {
	return &Service{Start: func(ctx context.Context) error {
		d, err := identity.NewDevIssuer(a.DevIssuerURL(), a.cfg.DataDir, a.component("dev-issuer"))
		if err != nil {
			return err
		}
		d.Register(a.echo)
		a.dev = d
		a.component("dev-issuer").Warn("development-only OIDC issuer enabled: it mints tokens for anyone on loopback; never enable it in production", "issuer", d.Issuer())
		return nil
	}}
}

func (a *App) publisherService() *Service {
	var gateway *session.Gateway
	return &Service{
		Start: func(ctx context.Context) error {
			var key *seal.Key
			if a.cfg.Audit.SigningKeyFile != "" {
				k, err := seal.LoadKey(a.cfg.Audit.SigningKeyFile, false)
				if err != nil {
					return err
				}
				key = k
			}
			a.pub = session.NewPublisher(a.bus.JS, session.PublisherOptions{Spool: a.cfg.Audit.SpoolEvents,
				SpoolBytes: a.cfg.Audit.SpoolBytes, Wait: a.cfg.Audit.SpoolWait, Linger: a.cfg.Audit.Linger, SealKey: key, OfflineLimit: a.cfg.Audit.OfflineLimit}, a.reg, a.component("publisher"))
			if dir := a.cfg.Audit.SpoolDir; dir != config.SpoolNone {
				// What a killed predecessor left is published before the proxies serve and
				// before its gateway key goes (the sweeper then ends its sessions after it).
				rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				n, err := a.pub.OpenSpool(rctx, dir)
				cancel()
				if err != nil {
					return err
				}
				if n > 0 {
					a.component("publisher").Info("the audit spool's journal was published", "messages", n)
				}
			}
			// Sessions name this process; if it dies without ending them, the sweeper does.
			g, err := session.StartGateway(ctx, a.bus.JS, a.cfg.Audit.GatewayTimeout, a.cfg.DataDir, a.component("gateway"))
			if err != nil {
				return err
			}
			gateway = g
			a.pub.SetGateway(g.ID)
			return nil
		},
		Run: func(ctx context.Context) error {
			gateway.Run(ctx)
			return nil
		},
		Stop: func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err := a.pub.Close(sctx)
			if gateway != nil && err == nil {
				gateway.Stop(sctx) // every session was ended and its end published
			}
			return err
		},
	}
}
