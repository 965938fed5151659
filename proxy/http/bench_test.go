package http_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkHTTP: one request at a time over one kept-alive HTTP/1.1 connection, to the
// harness's Go service directly and through the gateway (TLS, token verified, policy
// decided, audit published to the embedded JetStream): ns/op is a request's latency.
// Everything — client, gateway, NATS, service — runs in this process, so allocs/op through
// the gateway minus direct's is what the gateway allocates per request.
//
//	direct            GET /x on the service (its echo handler, about 300 bytes of JSON)
//	gateway           the same through orders-host (audit buffered)
//	gateway-strict    the same through orders (audit strict: each event acknowledged)
//	direct-customers  GET /customers on the service (a small document with card numbers)
//	gateway-masked    the same through orders-host, masked by path and detector
func BenchmarkHTTP(b *testing.B) {
	e := start(b)
	gw := e.client(b)
	gw.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1, as direct
	direct := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 60 * time.Second}
	for _, bc := range []struct {
		name, url, host string
		c               *http.Client
		masked          bool
	}{
		{"direct", e.up.url + "/x", "", direct, false},
		{"gateway", e.url + "/x", "orders.internal", gw, false},
		{"gateway-strict", e.url + "/orders/x", "", gw, false},
		{"direct-customers", e.up.url + "/customers", "", direct, false},
		{"gateway-masked", e.url + "/customers", "orders.internal", gw, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, err := http.NewRequest(http.MethodGet, bc.url, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+e.token)
			if bc.host != "" {
				req.Host = bc.host
			}
			do := func() string {
				resp, err := bc.c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("%d %v: %s", resp.StatusCode, err, body)
				}
				return string(body)
			}
			// The first request opens the connection and the gateway's session.
			if body := do(); bc.masked && strings.Contains(body, card) {
				b.Fatalf("not masked: %s", body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				do()
			}
		})
	}
}
