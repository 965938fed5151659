// Package http is the HTTP proxy: callers (curl, service clients, kubectl through the
// Kubernetes profile) send their OIDC token as a bearer token; the proxy picks the resource
// by host name or path prefix, normalises the path once (what is decided is what is
// forwarded), asks policy about each request, and forwards an allowed one with the
// credential it holds for the service — or answers a refusal as an RFC 9457 problem
// document, holds it for approval, and masks JSON fields and detected values in the
// response as it streams. WebSocket upgrades pass after the decision, their messages
// recorded. The wire only: sessions, decisions, approvals and revocation are
// proxy/session's. A Profile adds an API's own meaning (proxy/kube).
package http

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Config configures the proxy.
type Config struct {
	Listen string
	// TLS serves callers over TLS (nil: plain HTTP, for loopback tests only).
	TLS *tls.Config
	// ReadHeaderTimeout bounds a request's headers (slowloris), IdleTimeout a kept-alive
	// connection's wait, BodyTimeout a request body's arrival.
	ReadHeaderTimeout, IdleTimeout, BodyTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers, MaxBodyBytes its body.
	MaxHeaderBytes int
	MaxBodyBytes   int64
	// MaxConnections bounds the client connections served at once.
	MaxConnections int
	Limits         session.Limits
	// MaskKey keys the HMAC tokens of the hmac mask method.
	MaskKey []byte
}

// Resources are the resources the proxy serves, looked up on every request (so a change
// is seen at once).
type Resources interface {
	session.Resources
	// All is every resource by name. The map is read only and replaced whole on a change
	// (the proxy keys its routing table on its identity).
	All() map[string]*config.Resource
}

// Server is the HTTP proxy.
type Server struct {
	cfg       Config
	res       Resources
	auth      *session.Authenticator
	pub       *session.Publisher
	decider   session.Decider
	log       *slog.Logger
	live      *session.Registry
	approvals *session.Approvals
	masks     *mask.Cache
	profiles  map[string]Profile
	routes    atomic.Pointer[routeTable]
	upstreams upstreams

	ln     net.Listener
	srv    *http.Server
	ctx    context.Context // Serve's: the gateway's lifetime
	mu     sync.Mutex
	conns  map[net.Conn]*clientConn
	closed bool
	open   atomic.Int64
	// sessions counts the sessions not ended yet: Shutdown waits for their ends to be
	// recorded (before the audit publisher closes).
	sessions sync.WaitGroup

	errLog *stdlog.Logger

	requests *prometheus.CounterVec
	active   prometheus.Gauge
}

// New makes the proxy. Resources of type http are served as plain HTTP; a profile serves
// its own type (SetProfile).
func New(cfg Config, res Resources, v *identity.Verifier, pub *session.Publisher, d session.Decider, reg prometheus.Registerer, log *slog.Logger) *Server {
	live := session.NewRegistry(log)
	s := &Server{cfg: cfg, res: res, auth: &session.Authenticator{Verifier: v, Resources: res, Live: live}, pub: pub, decider: d,
		log: log, live: live, masks: mask.NewCache(cfg.MaskKey), profiles: map[string]Profile{"http": plain{}},
		conns: map[net.Conn]*clientConn{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_http_requests_total",
			Help: "HTTP requests through the proxy, by resource type and outcome (forwarded, denied, held, refused, error)."}, []string{"type", "outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_http_sessions_active", Help: "Live HTTP sessions (a caller's token on one connection)."}),
	}
	s.upstreams.init()
	s.errLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	if reg != nil {
		reg.MustRegister(s.requests, s.active)
	}
	return s
}

// SetProfile serves resources of type typ with p (before Serve).
func (s *Server) SetProfile(typ string, p Profile) { s.profiles[typ] = p }

// Sessions is the registry of live sessions.
func (s *Server) Sessions() *session.Registry { return s.live }

// SetApprovals connects the proxy to the approvals system (before Serve).
func (s *Server) SetApprovals(a *session.Approvals) { s.approvals = a }

// Listen binds the listener.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http proxy listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves requests until ctx ends or Shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          s.errLog,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(cctx context.Context, c net.Conn) context.Context {
			return context.WithValue(cctx, connKey{}, s.newConn(c))
		},
		ConnState: s.connState,
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	ln := s.ln
	if s.cfg.TLS != nil {
		tc := s.cfg.TLS.Clone()
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = []string{"h2", "http/1.1"}
		}
		srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	}
	ln = &limitListener{Listener: ln, s: s}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, ends every session and waits for the requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*clientConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		if s.ln != nil {
			return s.ln.Close()
		}
		return nil
	}
	// Long streams (watches, WebSockets) would hold Shutdown forever: they are cut.
	for _, c := range conns {
		c.cancelAll("shutdown")
	}
	err := srv.Shutdown(ctx)
	s.mu.Lock()
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close("shutdown")
	}
	if werr := session.Drain(ctx, &s.sessions); werr != nil && err == nil {
		err = werr
	}
	return err
}

// lifetime is the gateway's lifetime context (Serve's).
func (s *Server) lifetime() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

// limitListener turns away connections past MaxConnections.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.open.Load() >= int64(l.s.cfg.MaxConnections) {
			l.s.log.Warn("connection refused: too many connections", "client", c.RemoteAddr().String())
			c.Close()
			continue
		}
		return c, nil
	}
}
