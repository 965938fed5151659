package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// MetadataPrefix is where protected-resource metadata is served (RFC 9728): the
// endpoint's path follows it.
const MetadataPrefix = "/.well-known/oauth-protected-resource"

// AuditResource is the resource name of the MCP sessions' trail (gh.audit._mcp.…): a
// name no configured resource can have.
const AuditResource = "_mcp"

// Config is what the MCP server needs: its section of the config, and what the wiring
// resolved.
type Config struct {
	config.MCP
	// ResourceURL is the endpoint's URL as agents reach it (the protected resource).
	ResourceURL string
	// AuthorizationServers are the issuers whose tokens the gateway accepts.
	AuthorizationServers []string
	// Postgres is the address of the gateway's own PostgreSQL proxy (loopback), through
	// which the query tool runs statements.
	Postgres string
	// AuditMode is strict or buffered, for the MCP sessions' trail.
	AuditMode string
	// Limits bound what the trail records.
	Limits session.Limits
	// Version is the gateway's, told to clients in initialize.
	Version string
}

// Resources are the resources in force.
type Resources interface {
	All() map[string]*config.Resource
}

// Deps are what the MCP server works with: the resources in force, the token verifier
// (with the revocations), the publisher of the MCP sessions' trail, the decider (for
// describe_resource) and the resources' catalogs.
type Deps struct {
	Resources Resources
	Verifier  *identity.Verifier
	Publisher *session.Publisher
	Decider   session.Decider
	Catalogs  Catalogs
	// AgentCalls are the tickets the query tool's connections bring to the PostgreSQL
	// proxy: the proxy of this process must be given the same registry.
	AgentCalls *session.AgentCalls
}

// Server is the MCP server.
type Server struct {
	cfg      Config
	res      Resources
	verifier *identity.Verifier
	pub      *session.Publisher
	decider  session.Decider
	catalogs Catalogs
	agents   *session.AgentCalls
	log      *slog.Logger
	sdk      *sdk.Server
	stream   *sdk.StreamableHTTPHandler
	limits   *limiter
	parked   *parking
	res0     *config.Resource

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*mcpSession
	wg       sync.WaitGroup
}

// New makes the MCP server.
func New(cfg Config, d Deps, log *slog.Logger) (*Server, error) {
	if cfg.Postgres == "" {
		return nil, errors.New("mcp: the query tool needs the PostgreSQL proxy in this process (target proxy-postgres)")
	}
	if d.AgentCalls == nil {
		return nil, errors.New("mcp: no agent tickets (the PostgreSQL proxy of this process must share them)")
	}
	if cfg.ResourceURL == "" {
		return nil, errors.New("mcp: no resource URL (mcp.resource_url)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, res: d.Resources, verifier: d.Verifier, pub: d.Publisher, decider: d.Decider, catalogs: d.Catalogs, agents: d.AgentCalls, log: log, ctx: ctx, cancel: cancel,
		limits:   newLimiter(cfg.CallsPerMinute, cfg.RowsPerHour, cfg.SessionsPerMinute),
		sessions: map[string]*mcpSession{},
		res0:     &config.Resource{Name: AuditResource, Type: "mcp", Audit: cfg.AuditMode},
	}
	s.parked = newParking(cfg.MaxParked, cfg.ParkedResults)
	s.sdk = sdk.NewServer(&sdk.Implementation{Name: "gatehouse", Title: "Gatehouse", Version: cfg.Version}, &sdk.ServerOptions{
		Instructions: "Gatehouse runs your SQL on the resources list_resources names, through the gateway's policy: " +
			"results may be masked, statements may be denied (the reason says why) or held for a person's approval " +
			"(you get an approval id at once; ask approval_status later). Every call is recorded.",
		Logger:       log,
		Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		// The versions with sessions: an MCP session is one trail, tied to the identity
		// that opened it and bounded per agent (2026-07-28 has no sessions: every request
		// would be a session of its own).
		SupportedProtocolVersions: []string{"2025-11-25", "2025-06-18", "2025-03-26"},
	})
	s.addTools()
	s.stream = sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.sdk }, &sdk.StreamableHTTPOptions{
		MaxRequestBodyBytes: int64(cfg.MaxRequestBytes),
		SessionTimeout:      30 * time.Minute,
		Logger:              log,
	})
	return s, nil
}

// MetadataURL is the URL of the protected-resource metadata, as WWW-Authenticate names
// it.
func (s *Server) MetadataURL() string {
	base, path := splitURL(s.cfg.ResourceURL)
	return base + MetadataPrefix + path
}

// splitURL splits an absolute URL into its origin and its path.
func splitURL(u string) (origin, path string) {
	i := strings.Index(u, "://")
	if j := strings.IndexByte(u[i+3:], '/'); i >= 0 && j >= 0 {
		return u[:i+3+j], u[i+3+j:]
	}
	return u, ""
}

// Metadata serves the protected-resource metadata (RFC 9728): this endpoint, and the
// issuers whose tokens it takes.
func (s *Server) Metadata() http.Handler {
	return auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               s.cfg.ResourceURL,
		AuthorizationServers:   s.cfg.AuthorizationServers,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "Gatehouse MCP server",
	})
}

// Handler is the streamable HTTP endpoint: bearer token, per-agent request bound, then
// the SDK.
func (s *Server) Handler() http.Handler {
	return auth.RequireBearerToken(s.verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: s.MetadataURL()})(s.throttle(s.stream))
}

// verify checks an agent's token: what every proxy checks (services/identity), and no
// revocation in force. The message names the check that failed, never the token.
func (s *Server) verify(ctx context.Context, tok string, r *http.Request) (*auth.TokenInfo, error) {
	id, err := s.verifier.Verify(ctx, tok)
	if err != nil {
		s.log.Info("mcp token rejected", "remote", r.RemoteAddr, "err", err)
		return nil, fmt.Errorf("%w: %s", auth.ErrInvalidToken, err.Error())
	}
	if reason, revoked := s.verifier.Revoked(id.Identity); revoked {
		return nil, fmt.Errorf("%w: %s is revoked: %s", auth.ErrInvalidToken, id.Name, reason)
	}
	// UserID ties the MCP session to this identity: the SDK refuses the session to
	// another token's.
	return &auth.TokenInfo{Expiration: id.Expiry, UserID: agentKey(id),
		Extra: map[string]any{extraIdentity: id, extraToken: tok, extraAddr: r.RemoteAddr}}, nil
}

const (
	extraIdentity = "gatehouse.identity"
	extraToken    = "gatehouse.token"
	extraAddr     = "gatehouse.addr"
)

// agentKey is what limits and parked statements are kept by: issuer and subject.
func agentKey(id *identity.Identity) string { return id.Issuer + "\x00" + id.Subject }

// throttle bounds the HTTP requests of one agent (every JSON-RPC message, not only tool
// calls: listing tools a thousand times a second is refused too).
func (s *Server) throttle(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ti := auth.TokenInfoFromContext(r.Context())
		if ti == nil {
			http.Error(w, "no verified token", http.StatusUnauthorized) // unreachable behind RequireBearerToken
			return
		}
		now := time.Now()
		if !s.limits.request(ti.UserID, now) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, fmt.Sprintf("too many requests: this gateway takes at most %d requests a minute from one agent (mcp.calls_per_minute × 4 + 60)", s.limits.requestsPerMinute()), http.StatusTooManyRequests)
			return
		}
		init, err := s.initializes(r)
		if err != nil {
			http.Error(w, "malformed JSON-RPC: "+err.Error(), http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" && init && !s.limits.session(ti.UserID, now) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, fmt.Sprintf("too many new MCP sessions: this gateway opens at most %d a minute for one agent (mcp.sessions_per_minute); reuse a session", s.cfg.SessionsPerMinute), http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// initializes says whether r's body is an initialize (a new MCP session). It reads at
// most mcp.max_request_bytes of it and puts back what it read. A body whose objects repeat
// a key, or spell one in another case, is refused: Go's decoder matches keys whatever
// their case and keeps the last, the SDK's matches exactly, so "method":"initialize"
// followed by "METHOD":"ping" opened sessions the limit never counted (found by the
// attacker).
func (s *Server) initializes(r *http.Request) (bool, error) {
	if r.Method != http.MethodPost || r.Body == nil {
		return false, nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, int64(s.cfg.MaxRequestBytes)+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	if err != nil {
		return false, nil
	}
	methods, err := jsonMethods(head)
	if err != nil {
		return false, err
	}
	return slices.Contains(methods, "initialize"), nil
}

// jsonMethods returns the "method" of a JSON-RPC message, or of each message of a batch.
// Bodies that are not JSON are left to the SDK, which refuses them.
func jsonMethods(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	t, err := dec.Token()
	if err != nil {
		return nil, nil
	}
	var out []string
	object := func() error {
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil
			}
			key, _ := kt.(string)
			low := strings.ToLower(key)
			if seen[low] {
				return fmt.Errorf("the key %q appears more than once (in any case)", key)
			}
			seen[low] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil
			}
			var m string
			if key == "method" && json.Unmarshal(v, &m) == nil {
				out = append(out, m)
			}
		}
		_, _ = dec.Token()
		return nil
	}
	switch t {
	case json.Delim('{'):
		return out, object()
	case json.Delim('['):
		for dec.More() {
			if t, err := dec.Token(); err != nil || t != json.Delim('{') {
				return out, nil
			}
			if err := object(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// Close ends the MCP sessions' trails, and the statements parked for approval.
func (s *Server) Close(ctx context.Context) error {
	s.cancel()
	s.parked.closeAll()
	s.mu.Lock()
	open := make([]*mcpSession, 0, len(s.sessions))
	for _, m := range s.sessions {
		open = append(open, m)
	}
	s.mu.Unlock()
	var errs []error
	for _, m := range open {
		errs = append(errs, m.end(ctx, "shutdown"))
		_ = m.ss.Close() // its watcher returns
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
