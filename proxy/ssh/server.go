// Package ssh is the SSH proxy: OpenSSH clients (ssh, scp, sftp, rsync) connect to it
// unmodified and authenticate with their OIDC token (as the password, or the answer to a
// keyboard-interactive prompt) or with a certificate the gateway's CA signed for them
// (`gatehouse ssh login`); the SSH user name selects the resource and the account on the
// host (RESOURCE+LOGIN). The proxy logs in to the host with the key it holds, after checking
// the host's key against the pinned key or CA, and relays each channel: every channel open,
// channel request (exec, shell, subsystem, pty-req, env, forwarding) and sftp operation is
// decided by policy before it reaches the host, and what the channel carries is recorded as
// timed frames (asciicast v2). The wire only: the session, decisions, approvals and the
// live-session registry are proxy/session's.
package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Config configures the proxy.
type Config struct {
	Listen string
	// HostKeys are the gateway's own host keys, which clients pin.
	HostKeys []ssh.Signer
	// UserCAs are the CAs whose user certificates (sshcert) are accepted in place of a token.
	UserCAs []ssh.PublicKey
	// AuthTimeout bounds the key exchange and authentication (the host's login included).
	AuthTimeout time.Duration
	// MaxConnections bounds the connections served at once, MaxUnauthenticated those not
	// authenticated yet, MaxChannels the channels one connection has open.
	MaxConnections, MaxUnauthenticated, MaxChannels int
	// MaxRecordedBytes bounds what one channel records (past it, bytes pass unrecorded).
	MaxRecordedBytes int64
	Limits           session.Limits
	// MaskKey keys the HMAC tokens of the hmac mask method; without it hmac redacts.
	MaskKey []byte
	// Ciphers are the ciphers offered to clients (nil: DefaultCiphers).
	Ciphers []string
}

// DefaultCiphers are the ciphers offered to clients: AES-GCM only. OpenSSH prefers
// chacha20-poly1305 when it is offered, which Go runs without assembly on amd64 at a fifth
// of AES-GCM's speed (the gateway encrypts each byte twice: to the client and to the host);
// every OpenSSH since 6.2 speaks AES-GCM. proxy.ssh.ciphers adds others for older clients.
var DefaultCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}

// Server accepts SSH clients.
type Server struct {
	cfg       Config
	auth      *session.Authenticator
	pub       *session.Publisher
	decider   session.Decider
	log       *slog.Logger
	live      *session.Registry
	approvals *session.Approvals
	masks     *mask.Cache

	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool

	open   atomic.Int64 // connections served now
	unauth atomic.Int64 // of which not authenticated yet

	connections *prometheus.CounterVec
	active      prometheus.Gauge
}

// New makes a proxy server.
func New(cfg Config, res session.Resources, v *identity.Verifier, pub *session.Publisher, d session.Decider, reg prometheus.Registerer, log *slog.Logger) *Server {
	live := session.NewRegistry(log)
	if len(cfg.Ciphers) == 0 {
		cfg.Ciphers = DefaultCiphers
	}
	s := &Server{cfg: cfg, auth: &session.Authenticator{Verifier: v, Resources: res, Live: live}, pub: pub, decider: d, log: log,
		live: live, masks: mask.NewCache(cfg.MaskKey), conns: map[*conn]struct{}{},
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_ssh_connections_total",
			Help: "SSH client connections, by outcome (ok, or what refused it: limit, handshake, auth, backend, audit)."}, []string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_ssh_sessions_active", Help: "Live SSH sessions."}),
	}
	reg.MustRegister(s.connections, s.active)
	return s
}

// Sessions is the registry of the proxy's live sessions (the wiring has it follow the
// revocations before Serve).
func (s *Server) Sessions() *session.Registry { return s.live }

// SetApprovals connects the proxy to the approvals system (before Serve).
func (s *Server) SetApprovals(a *session.Approvals) { s.approvals = a }

// Listen binds the listener.
func (s *Server) Listen() error {
	if len(s.cfg.HostKeys) == 0 {
		return errors.New("ssh proxy: no host key")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ssh proxy listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve accepts connections until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	return session.Accept(ctx, s.ln, func(c net.Conn) {
		// Limits first: a flood of connections (half-open ones that never finish the key
		// exchange included) is turned away before it costs a goroutine's handshake.
		if s.open.Load() >= int64(s.cfg.MaxConnections) || s.unauth.Load() >= int64(s.cfg.MaxUnauthenticated) {
			s.connections.WithLabelValues("limit").Inc()
			s.log.Warn("connection refused: too many connections", "client", c.RemoteAddr().String(),
				"open", s.open.Load(), "unauthenticated", s.unauth.Load())
			c.Close()
			return
		}
		s.open.Add(1)
		s.unauth.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			s.handle(ctx, c)
		}()
	})
}

// Shutdown ends every session (the clients are told) and waits for them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	return session.Drain(ctx, &s.wg)
}
