package postgres

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Config configures the proxy.
type Config struct {
	Listen               string
	MaxMessageBytes      int
	StartupTimeout       time.Duration
	TLS                  *tls.Config // nil: SSLRequest is answered 'N'
	AllowPlaintextTokens bool
	Limits               session.Limits
	// MaskKey keys the HMAC tokens of the hmac mask method; without it hmac redacts.
	MaskKey []byte
	// CatalogRefresh is how often each resource's catalog is read again (besides after a
	// session changes the schema); default a minute.
	CatalogRefresh time.Duration
	// MaxConnecting bounds the backend connections opened at once per resource (default
	// 16): the rest wait their turn within the startup timeout.
	MaxConnecting int
	// AgentCalls are the tickets of the MCP server in this process (session.AgentCalls):
	// a connection that brings one (startup parameter gatehouse.agent_ticket) runs a tool
	// call, whose tool and MCP client every decision request of the session carries. Nil:
	// a connection with a ticket is refused.
	AgentCalls *session.AgentCalls
}

// Resources resolves a database name to a resource.
type Resources = session.Resources

// Server accepts PostgreSQL clients.
type Server struct {
	cfg     Config
	auth    *session.Authenticator // the resource, the token, revocations: the shared half's
	pub     *session.Publisher
	decider session.Decider
	log     *slog.Logger
	cancels *cancelRegistry

	connecting sync.Map // resource name -> chan struct{}: backend connections being opened

	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool

	masks       *mask.Cache
	approvals   *session.Approvals
	live        *session.Registry
	cats        *catalogs
	catalogSink CatalogSink

	sessions *prometheus.CounterVec
	active   prometheus.Gauge
}

// New makes a proxy server.
func New(cfg Config, res Resources, v *identity.Verifier, pub *session.Publisher, d session.Decider, reg prometheus.Registerer, log *slog.Logger) *Server {
	live := session.NewRegistry(log)
	s := &Server{cfg: cfg, auth: &session.Authenticator{Verifier: v, Resources: res, Live: live}, pub: pub, decider: d, log: log,
		cancels: newCancelRegistry(), conns: map[*conn]struct{}{}, masks: mask.NewCache(cfg.MaskKey), live: live,
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_postgres_connections_total",
			Help: "Client connections, by outcome of the startup (ok, or the failed check)."}, []string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_postgres_sessions_active", Help: "Live sessions."}),
	}
	s.cats = newCatalogs(s)
	reg.MustRegister(s.sessions, s.active)
	return s
}

// SetCatalogSink gives the proxy where to publish the catalogs it reads (before Serve).
func (s *Server) SetCatalogSink(sink CatalogSink) { s.catalogSink = sink }

// Sessions is the registry of the proxy's live sessions: the wiring has it follow the
// revocations (Follow) before Serve; it ends sessions through the proxy's Terminate.
func (s *Server) Sessions() *session.Registry { return s.live }

// SetApprovals connects the proxy to the approvals system (before Serve).
func (s *Server) SetApprovals(a *session.Approvals) { s.approvals = a }

// Listen binds the listener.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("postgres proxy listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve accepts connections until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go s.cats.refreshLoop(ctx)
	return session.Accept(ctx, s.ln, func(c net.Conn) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, c)
		}()
	})
}

// Shutdown ends every session (FATAL 57P01 to the client) and waits for them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	return session.Drain(ctx, &s.wg)
}

// startupError is a failure before the session starts: what the client is told and the
// check that failed (for the auth.failed event).
type startupError struct {
	code, check, msg string
}

func (e *startupError) Error() string { return e.msg }

// alpnPostgres is the ALPN protocol PostgreSQL clients ask for.
const alpnPostgres = "postgresql"

// prefixConn replays bytes already read before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

func isLoopback(addr net.Addr) bool {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

// handle runs one client connection from startup to end.
func (s *Server) handle(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	st, err := s.startup(raw)
	if err != nil {
		var se *startupError
		if errors.As(err, &se) {
			s.sessions.WithLabelValues(se.check).Inc()
			s.log.Info("connection refused", "client", raw.RemoteAddr().String(), "check", se.check, "reason", se.msg)
			if st != nil {
				// A refusal at the startup deadline still reaches the client.
				_ = raw.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = st.conn.Write(encode(pgError("FATAL", se.code, se.msg, "")))
				s.authFailed(ctx, st, se)
			}
		} else {
			s.sessions.WithLabelValues("protocol").Inc()
			s.log.Debug("connection closed during startup", "client", raw.RemoteAddr().String(), "err", err)
		}
		if st != nil && st.backend != nil {
			st.backend.Conn.Close()
		}
		return
	}
	_ = st.conn.SetDeadline(time.Time{})
	s.sessions.WithLabelValues("ok").Inc()
	s.run(ctx, st)
}

// startState is what the startup phase learns.
type startState struct {
	conn     net.Conn // raw or TLS
	tls      bool
	params   map[string]string
	resource *config.Resource
	identity *identity.Identity
	backend  *pgconn.HijackedConn
	secret   uint32             // proxy-generated cancel secret given to the client
	agent    *session.AgentCall // the MCP server's tool call the connection runs, or nil
	deadline time.Time          // when the startup must be done
}

// startup negotiates SSL, reads the startup message, authenticates the client with its token
// and connects to the backend. The returned state is non-nil once an error can be sent.
func (s *Server) startup(c net.Conn) (*startState, error) {
	st := &startState{conn: c, deadline: time.Now().Add(s.cfg.StartupTimeout)}
	negotiated := false
	// PostgreSQL 17 direct TLS (sslnegotiation=direct): the client opens with a TLS
	// ClientHello instead of an SSLRequest, and must ask for ALPN "postgresql".
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return nil, err
	}
	pc := &prefixConn{Conn: c, prefix: first[:]}
	st.conn = pc
	if first[0] == 0x16 {
		if s.cfg.TLS == nil {
			return nil, errors.New("direct TLS attempted but TLS is not configured")
		}
		tc := tls.Server(pc, s.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("direct tls handshake: %w", err)
		}
		if tc.ConnectionState().NegotiatedProtocol != alpnPostgres {
			return nil, errors.New("direct TLS without ALPN \"postgresql\" refused")
		}
		st.conn, st.tls, negotiated = tc, true, true
	}
	for {
		code, body, err := readStartup(st.conn)
		if err != nil {
			return nil, err
		}
		switch {
		case code == codeSSLRequest && !negotiated:
			negotiated = true
			if s.cfg.TLS == nil {
				if _, err := st.conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := st.conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(st.conn, s.cfg.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			st.conn, st.tls = tc, true
		case code == codeGSSENCRequest && !negotiated:
			negotiated = true
			if _, err := st.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case code == codeCancelRequest:
			s.cancel(body)
			return nil, errors.New("cancel request handled")
		case code>>16 == 3:
			return st, s.authenticate(st, code, body)
		default:
			return st, &startupError{"08P01", "protocol", fmt.Sprintf("unsupported frontend protocol %d.%d: Gatehouse speaks 3.0", code>>16, code&0xffff)}
		}
	}
}

func (s *Server) authenticate(st *startState, code uint32, body []byte) error {
	var sm pgproto3.StartupMessage
	full := binary.BigEndian.AppendUint32(nil, code)
	if err := sm.Decode(append(full, body...)); err != nil {
		return &startupError{"08P01", "protocol", "malformed startup message: " + err.Error()}
	}
	st.params = sm.Parameters
	var unknown []string
	for k := range st.params {
		if strings.HasPrefix(k, "_pq_.") {
			unknown = append(unknown, k)
			delete(st.params, k)
		}
	}
	if code&0xffff != 0 || len(unknown) > 0 {
		// As PostgreSQL does: offer 3.0 and list the options we do not understand.
		if _, err := st.conn.Write(encode(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})); err != nil {
			return err
		}
	}
	if err := pinnedParams(st.params); err != nil {
		return err
	}
	// An agent ticket is the gateway's own: taken out here, never forwarded to the backend.
	ticket, hasTicket := st.params[session.AgentTicketParam]
	delete(st.params, session.AgentTicketParam)
	if hasTicket && !isLoopback(st.conn.RemoteAddr()) {
		return &startupError{"28000", "agent_ticket", "agent ticket refused: only the gateway's MCP server, over loopback, sends " + session.AgentTicketParam}
	}
	if !st.tls && !s.cfg.AllowPlaintextTokens && !isLoopback(st.conn.RemoteAddr()) {
		return &startupError{"28000", "tls", "TLS is required: tokens are not accepted over plain TCP (connect with sslmode=require)"}
	}
	dbname := st.params["database"]
	if dbname == "" {
		dbname = st.params["user"]
	}
	res, err := s.auth.Resource(dbname, "postgres")
	if err != nil {
		return &startupError{"3D000", "resource", fmt.Sprintf("resource %q is not a PostgreSQL resource on this gateway (dbname selects the resource)", dbname)}
	}
	st.resource = res
	if res.RequireTLS && !st.tls {
		return &startupError{"28000", "tls", fmt.Sprintf("resource %q requires TLS: connect with sslmode=require (or verify-full)", res.Name)}
	}
	if _, err := st.conn.Write(encode(&pgproto3.AuthenticationCleartextPassword{})); err != nil {
		return err
	}
	typ, pw, err := readTyped(st.conn, 16<<10)
	if err != nil {
		return err
	}
	if typ != 'p' {
		return &startupError{"08P01", "protocol", fmt.Sprintf("expected a password message, got %q", typ)}
	}
	token, _, err := cstring(pw)
	if err != nil || token == "" {
		return &startupError{"28P01", identity.CheckFormat, "password authentication failed: send an OIDC access token as the password"}
	}
	id, err := s.auth.Authenticate(context.Background(), token)
	var ae *session.AuthError
	switch {
	case errors.As(err, &ae) && ae.Class == "revoked":
		st.identity = id
		return &startupError{"28000", ae.Check, ae.Msg}
	case errors.As(err, &ae):
		return &startupError{"28P01", ae.Check, ae.Msg}
	case err != nil:
		return &startupError{"28P01", "token", "token rejected: " + err.Error()}
	}
	st.identity = id
	if hasTicket {
		call, err := s.cfg.AgentCalls.Redeem(ticket, id.Issuer, id.Subject)
		if err != nil {
			return &startupError{"28000", "agent_ticket", "agent ticket refused: " + err.Error()}
		}
		st.agent = &call
	}
	if st.backend, err = s.connectBackend(st); err != nil {
		return &startupError{"08006", "backend", fmt.Sprintf("cannot connect to resource %q: %v", res.Name, err)}
	}
	for name, want := range pinnedSettings {
		if got := st.backend.ParameterStatuses[name]; got != want {
			return &startupError{"08006", "backend", fmt.Sprintf("resource %q: the backend reports %s %q after the gateway asked for %q; refusing the session", res.Name, name, got, want)}
		}
	}
	// What the statements are resolved against: read (and published) before the first.
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.StartupTimeout)
	_, err = s.cats.ensure(ctx, res)
	cancel()
	if err != nil {
		if s.cats.of(res).version() == "" {
			return &startupError{"08006", "backend", fmt.Sprintf("cannot read the catalog of resource %q, which every decision needs: %v", res.Name, err)}
		}
		s.log.Warn("catalog refresh failed; the previous catalog stays in use", "resource", res.Name, "err", err)
	}
	var secret [4]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	st.secret = binary.BigEndian.Uint32(secret[:])
	return nil
}

// passthroughParams are startup parameters the proxy does not forward: it sets them itself.
var passthroughExcluded = map[string]bool{"user": true, "database": true, "replication": true}

// backendConfig is how the proxy connects to a resource's PostgreSQL, with the credential
// it holds (read now, so that a rotated secret is used for new connections).
func (s *Server) backendConfig(res *config.Resource) (*pgconn.Config, error) {
	pgc := res.Postgres
	secret, err := pgc.Secret()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(pgc.Address)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s dbname='%s' user='%s' sslmode=%s",
		host, port, strings.ReplaceAll(pgc.Database, "'", `\'`), strings.ReplaceAll(pgc.User, "'", `\'`), pgc.SSLMode))
	if err != nil {
		return nil, fmt.Errorf("backend config: %w", err)
	}
	cfg.Password = secret
	cfg.ConnectTimeout = s.cfg.StartupTimeout
	return cfg, nil
}

func (s *Server) connectBackend(st *startState) (*pgconn.HijackedConn, error) {
	cfg, err := s.backendConfig(st.resource)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams = map[string]string{}
	for k, v := range st.params {
		if !passthroughExcluded[k] {
			cfg.RuntimeParams[k] = v
		}
	}
	// PostgreSQL's own logs then attribute statements to the caller, by the name people
	// know (the subject, an opaque ID at many IdPs, is in the audit trail next to it).
	who := st.identity.Name
	if who == "" {
		who = st.identity.Subject
	}
	app := "gatehouse:" + who
	if a := st.params["application_name"]; a != "" {
		app += " " + a
	}
	cfg.RuntimeParams["application_name"] = app
	// The policy reads statements as UTF-8 with standard_conforming_strings on: the backend
	// must read them so too (pinnedParams refused a client that asked otherwise). Startup
	// parameters outrank the options parameter and ALTER ROLE/DATABASE ... SET.
	for name, v := range pinnedSettings {
		cfg.RuntimeParams[name] = v
	}
	ctx, cancel := context.WithDeadline(context.Background(), st.deadline)
	defer cancel()
	release, err := s.connectTurn(ctx, st.resource.Name)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	release()
	if err != nil {
		return nil, err
	}
	// pgconn may read in the background; SyncConn stops that and drains its buffers, so that
	// no byte of the backend's answers is taken by pgconn after we own the socket.
	if err := conn.SyncConn(ctx); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	hj, err := conn.Hijack()
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return hj, nil
}

// errConnectTurn: the startup timeout passed while other connections to the same resource
// were being opened.
var errConnectTurn = errors.New("other connections to its database were being opened for the whole startup_timeout (proxy.postgres.max_connecting at once)")

// connectTurn waits until fewer than MaxConnecting backend connections to resource are
// being opened, or ctx ends.
func (s *Server) connectTurn(ctx context.Context, resource string) (release func(), err error) {
	n := s.cfg.MaxConnecting
	if n <= 0 {
		n = 16
	}
	v, _ := s.connecting.LoadOrStore(resource, make(chan struct{}, n))
	sem := v.(chan struct{})
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, errConnectTurn
	}
}

func (s *Server) authFailed(ctx context.Context, st *startState, se *startupError) {
	id := &identity.Identity{}
	if st.identity != nil {
		id = st.identity
	}
	res := &config.Resource{Name: "_unknown", Audit: "buffered"}
	if st.resource != nil {
		res = st.resource
	}
	sess := session.New(id, res, s.pub, s.decider, s.cfg.Limits)
	_ = sess.Emit(ctx, &schemas.AuthFailed{Protocol: "postgres", ClientAddr: st.conn.RemoteAddr().String(),
		ClientUser: st.params["user"], Database: st.params["database"], Check: se.check, Message: se.msg})
}
