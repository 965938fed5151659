// The test harness: the gateway in front of a real Go service (and Debian's nginx), real
// curl, the audit trail read back from JetStream.

package http_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/proxy/session/sessiontest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/desired"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/identity"
)

type engineDecider struct{ e *policy.Engine }

func (d engineDecider) Decide(_ context.Context, r *schemas.DecisionRequest) schemas.DecisionReply {
	return d.e.Decide(&policy.Input{DecisionRequest: *r}, time.Now())
}

type resources map[string]*config.Resource

func (r resources) Resource(name string) (*config.Resource, bool) { res, ok := r[name]; return res, ok }
func (r resources) All() map[string]*config.Resource              { return r }

func (r resources) list() []config.Resource {
	var out []config.Resource
	for _, res := range r {
		out = append(out, *res)
	}
	return out
}

// addResource adds (or replaces) a resource the gateway serves, as a live change does.
func (e *env) addResource(r *config.Resource) {
	e.resource[r.Name] = r
	e.live.Set(e.resource.list())
}

// upstreamSecret is the credential the gateway holds for the service.
const upstreamSecret = "svc-secret-7f3a"

var testPolicies = []config.Policy{{Name: "api", Resources: []string{"orders", "orders-nginx", "orders-host"}, Rules: []config.Rule{
	{Name: "reads", Effect: "allow", When: `request.http.method in ["GET", "HEAD"]`},
	{Name: "payments", Effect: "allow", When: `request.http.method == "POST" && request.http.path == "/payments"`},
	{Name: "big-payments", Effect: "require_approval", When: `request.http.method == "POST" && request.http.path == "/payments" && request.http.body.amount > 1000.0`,
		Reason: "payments over 1000 need a second person", Approval: &config.Approval{Approvers: []string{"approvers"}, Timeout: 10 * time.Minute}},
	{Name: "huge-payments", Effect: "deny", When: `request.http.method == "POST" && request.http.body.amount > 100000.0`, Reason: "payments over 100000 are refused"},
	{Name: "no-customer-42", Effect: "deny", When: `request.http.route == "/customers/{id}" && request.http.params.id == "42"`, Reason: "customer 42 is off limits"},
	{Name: "no-deletes", Effect: "deny", When: `request.http.method == "DELETE"`, Reason: "deletes go through the change process"},
	{Name: "admin", Effect: "deny", When: `request.http.path.startsWith("/admin")`, Reason: "the admin API is closed"},
	{Name: "cards", Effect: "mask", When: `request.http.path.startsWith("/customers") || request.http.path.startsWith("/big") || request.http.path.startsWith("/text")`,
		Mask: &config.Mask{Fields: []string{"$.customers[*].card_number", "$..ssn"}, Detectors: []string{"card"}}},
	{Name: "stream-cards", Effect: "mask", When: `request.http.path.startsWith("/events")`, Mask: &config.Mask{Detectors: []string{"card"}}},
}}}

type env struct {
	addr     string
	url      string // https://addr
	caFile   string
	token    string
	mint     func(identity.TokenRequest) string
	bus      *bus.Bus
	up       *upstream
	srv      *ghttp.Server
	resource resources // what the test reads; addResource changes what the gateway serves
	live     *desired.LiveResources
}

func logOut() io.Writer {
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func start(t testing.TB) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logOut(), nil))
	up := startUpstream(t)
	b := bustest.Connect(t)
	pub := sessiontest.Publisher(t, b, log)
	v, mint := sessiontest.Issuer(t, log)
	eng, err := policy.Compile(testPolicies, 1)
	require.NoError(t, err)
	backend := func(u string, prefix string, hosts ...string) *config.HTTPBackend {
		be := &config.HTTPBackend{URL: u, PathPrefix: prefix, Hosts: hosts, Bearer: upstreamSecret}
		return be
	}
	res := resources{
		"orders":      {Name: "orders", Type: "http", Audit: "strict", HTTP: backend(up.url, "/orders")},
		"orders-host": {Name: "orders-host", Type: "http", Audit: "buffered", HTTP: backend(up.url, "", "orders.internal")},
	}
	for _, r := range res {
		r.HTTP.TokenHeader, r.HTTP.DecideBodyBytes, r.HTTP.RecordBodyBytes, r.HTTP.Timeout = "Authorization", 1<<20, 64<<10, 30*time.Second
	}
	dir := t.TempDir()
	certFile, keyFile, err := devcert.Ensure(dir)
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	live := desired.NewLiveResources(res.list())
	srv := ghttp.New(ghttp.Config{Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 30 * time.Second, BodyTimeout: 10 * time.Second,
		MaxHeaderBytes: 16 << 10, MaxBodyBytes: 8 << 20, MaxConnections: 200,
		Limits: session.Limits{ResultChunkBytes: 64 << 10, MaxResultBytes: 1 << 20, MaxSQLBytes: 64 << 10}},
		live, v, pub, engineDecider{eng}, prometheus.NewRegistry(), log)
	srv.SetApprovals(&session.Approvals{JS: b.JS, NC: b.NC, Hint: "approve with:", Log: log})
	require.NoError(t, srv.Sessions().Follow(t.Context(), b.JS))
	require.NoError(t, srv.Listen())
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx); close(done) }()
	t.Cleanup(func() {
		stop()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	tok := mint(identity.TokenRequest{Subject: "svc-billing", Groups: []string{"billing"}, Name: "billing@example.com"})
	return &env{addr: srv.Addr(), url: "https://" + srv.Addr(), caFile: certFile, token: tok, mint: mint, bus: b, up: up, srv: srv, resource: res, live: live}
}

// client is a Go HTTP client trusting the gateway's certificate.
func (e *env) client(t testing.TB) *http.Client {
	pem, err := os.ReadFile(e.caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}, Timeout: 60 * time.Second}
}

// curl runs the real curl against the gateway with the token; it returns the body, the
// status and curl's stderr.
func (e *env) curl(t *testing.T, token string, args ...string) (string, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"-sS", "--cacert", e.caFile, "-o", "-", "-w", "\n%{http_code}"}
	if token != "" {
		base = append(base, "-H", "Authorization: Bearer "+token)
	}
	cmd := exec.CommandContext(ctx, "curl", append(base, args...)...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	_ = cmd.Run()
	out := o.String()
	i := strings.LastIndexByte(out, '\n')
	code := 0
	if i >= 0 {
		fmt.Sscanf(out[i+1:], "%d", &code)
		out = out[:i]
	}
	return out, code, er.String()
}

// events reads the audit trail of a resource until cond holds of it.
func (e *env) events(t *testing.T, resource string, cond func([]schemas.Event) bool) []schemas.Event {
	t.Helper()
	return sessiontest.Events(t, e.bus, resource, cond)
}

func ofType[T any](t *testing.T, evs []schemas.Event, typ string) []T {
	t.Helper()
	return sessiontest.OfType[T](t, evs, typ)
}

func hasType(evs []schemas.Event, typ string, match func(json.RawMessage) bool) bool {
	return sessiontest.HasType(evs, typ, match)
}

// upstream is the service behind the gateway: it records what it was sent.
type upstream struct {
	url   string
	mu    sync.Mutex
	seen  []*http.Request
	steps chan struct{} // the SSE and stream handlers wait on it between parts
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

const card = "4111 1111 1111 1111"

func startUpstream(t testing.TB) *upstream {
	u := &upstream{steps: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/customers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"customers":[{"id":1,"name":"Ann","card_number":%q,"contact":{"ssn":"123-45-6789","note":"card on file %s"}},{"id":2,"name":"Bo","card_number":"5500 0000 0000 0004"}],"total":2}`, card, "4111111111111111")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		// About 100 MB of JSON, streamed: the first part, then a wait for the test to have
		// seen it through the gateway (the gateway must not hold the body whole).
		w.Header().Set("Content-Type", "application/json")
		fl := w.(http.Flusher)
		io.WriteString(w, `{"customers":[`)
		rec := fmt.Sprintf(`{"id":%%d,"name":"Customer %%d","card_number":%q,"notes":"%s"}`, card, strings.Repeat("x", 400))
		n := 220000
		if r.URL.Query().Get("n") != "" {
			fmt.Sscanf(r.URL.Query().Get("n"), "%d", &n)
		}
		for i := 0; i < n; i++ {
			if i > 0 {
				io.WriteString(w, ",")
			}
			fmt.Fprintf(w, rec, i, i)
			if i == 1000 && r.URL.Query().Get("wait") != "" {
				fl.Flush()
				select {
				case <-u.steps:
				case <-r.Context().Done():
					return
				}
			}
		}
		io.WriteString(w, `]}`)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "id: %d\ndata: event %d card %s\n\n", i, i, "4111111111111111")
			fl.Flush()
			if i < 2 {
				select {
				case <-u.steps:
				case <-r.Context().Done():
					return
				}
			}
		}
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		fmt.Fprintf(w, "name,card_number\nAnn,%s\n", card)
	})
	mux.HandleFunc("/forever", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			fmt.Fprintf(w, "tick %d\n", i)
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	up := websocket.Upgrader{}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte("echo: "), p...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "raw_path": r.URL.RawPath, "query": r.URL.RawQuery,
			"authorization": r.Header.Get("Authorization"), "xff": r.Header.Get("X-Forwarded-For"), "body": string(body),
			"impersonate": r.Header.Get("Impersonate-User"), "cookie": r.Header.Get("Cookie")})
	})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	u.url = hs.URL
	return u
}

// rawConn opens a TLS connection to the gateway for hand-made requests.
func (e *env) rawConn(t *testing.T) *tls.Conn {
	pem, err := os.ReadFile(e.caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

var _ = net.Dial
