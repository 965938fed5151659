package integration

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The chaos load's HTTP side: two clients (chaos-api buffered, chaos-api-strict strict)
// send numbered GETs through proxy-http to a backend in the test process, which records
// every request that reached it. Every HTTP request needs a decision (proxy-http keeps no
// decision cache). proxy-http connects to NATS as the other components do (not through
// the postgres proxy's links): the faults that cut the proxy from NATS are the postgres
// proxy's.

// chaosBackendCredential is what proxy-http sends the backend; the clients never see it.
const chaosBackendCredential = "chaos-backend-credential"

// chaosHTTPResources are the HTTP resources and their path prefixes, for the config.
const chaosHTTPResources = `  - name: chaos-api
    type: http
    labels: {env: dev, team: orders}
    audit: buffered
    http: {url: %[1]q, path_prefix: /chaos-api, bearer: %[2]q}
  - name: chaos-api-strict
    type: http
    labels: {env: dev, team: orders}
    audit: strict
    http: {url: %[1]q, path_prefix: /chaos-api-strict, bearer: %[2]q}
`

// chaosHTTPPolicy lets the load's identity read through both.
const chaosHTTPPolicy = `  - name: chaos-api
    resources: [chaos-api, chaos-api-strict]
    rules:
      - name: orders-readers-get
        effect: allow
        when: '"orders-readers" in identity.groups && request.http.method == "GET"'
        reason: orders-readers may read the chaos API
`

// chaosBackend is the HTTP service behind proxy-http: it answers each request with its
// marker and records which markers reached it.
type chaosBackend struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reached map[string]bool // "k-i"
	badAuth int             // requests without the gateway's credential
}

func newChaosBackend(t *testing.T) *chaosBackend {
	b := &chaosBackend{reached: map[string]bool{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+chaosBackendCredential)) != 1 {
			b.mu.Lock()
			b.badAuth++
			b.mu.Unlock()
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		m := chaosMarker.FindStringSubmatch(r.URL.Path)
		if m == nil {
			http.NotFound(w, r)
			return
		}
		b.mu.Lock()
		b.reached[m[1]+"-"+m[2]] = true
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"order": %q, "status": "shipped"}`, m[0])
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// markers are the requests that reached the backend.
func (b *chaosBackend) markers() (map[string]bool, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bool, len(b.reached))
	for m := range b.reached {
		out[m] = true
	}
	return out, b.badAuth
}

// chaosHTTPPath is client k's request i under the resource's prefix.
func chaosHTTPPath(prefix string, k, i int) string {
	return fmt.Sprintf("%s/orders/chaos_%d_%d_", prefix, k, i)
}

// runHTTP is an HTTP client of the load: GETs through proxy-http with the load's token,
// over one kept-alive connection (one gateway session) until it breaks.
func (lc *loadClient) runHTTP(ctx context.Context, c *chaosCluster) {
	ca, err := os.ReadFile(filepath.Join(c.dirs["proxy-http"], "dev-tls.crt"))
	if err != nil {
		lc.add(stmtRecord{i: -1, start: time.Now(), end: time.Now(), err: "read proxy-http's certificate: " + err.Error()})
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, MaxIdleConnsPerHost: 1,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer tr.CloseIdleConnections() // the session ends with its connection
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	prefix := "/chaos-api"
	if lc.strict {
		prefix = "/chaos-api-strict"
	}
	for i := 0; ctx.Err() == nil; i++ {
		r := stmtRecord{i: i, start: time.Now()}
		marker := fmt.Sprintf("chaos_%d_%d_", lc.k, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.httpProxy+chaosHTTPPath(prefix, lc.k, i), nil)
		if err != nil {
			panic(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.reader)
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
			case !strings.Contains(string(body), marker):
				err = fmt.Errorf("the answer is not the request's: %.100s", body)
			}
		}
		r.end = time.Now()
		if ctx.Err() != nil && err != nil {
			return // stopped by the test, not refused
		}
		var opErr *net.OpError
		switch {
		case err == nil:
			r.ok = true
		case errors.As(err, &opErr) && opErr.Op == "dial":
			lc.connectFailed(ctx, err)
			continue
		default:
			r.err = shortErr(err)
		}
		lc.add(r)
	}
}

// checkBackend checks that every request that reached the backend has a decision that
// allowed it in the trail, and that none came without the gateway's credential.
func checkBackend(inv *invariants, b *chaosBackend, tr *chaosTrail) {
	reached, badAuth := b.markers()
	inv.backendReached = len(reached)
	if badAuth > 0 {
		inv.fail("%d requests reached the HTTP backend without the gateway's credential", badAuth)
	}
	inv.backendUndecided = checkReached(inv, "HTTP request", reached, tr)
}

// checkReached fails each marker that reached a backend without an allowing decision in the
// trail (the first ten named), and returns how many did.
func checkReached(inv *invariants, what string, reached map[string]bool, tr *chaosTrail) int {
	bad := 0
	for m := range reached {
		s, ok := tr.byMarker[m]
		e := tr.effect[s]
		if ok && (e == "allow" || e == "mask") {
			continue
		}
		if bad++; bad <= 10 {
			inv.fail("%s %s reached the backend with decision %q (in the trail: %v)", what, m, e, ok)
		}
	}
	return bad
}

// waitListening waits until a proxy's listener accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	_, ok := waitFor(time.Minute, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	require.True(t, ok, "no proxy listening on %s", addr)
}
