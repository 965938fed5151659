package http_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
)

type echoed struct {
	Method, Path, RawPath, Query, Authorization, Xff, Body, Cookie string
}

func decodeEcho(t *testing.T, body string) echoed {
	t.Helper()
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	return echoed{Method: m["method"], Path: m["path"], RawPath: m["raw_path"], Query: m["query"], Authorization: m["authorization"],
		Xff: m["xff"], Body: m["body"], Cookie: m["cookie"]}
}

// TestAuthStripAndInject: the caller's token is verified and never reaches the service,
// which gets the gateway's credential instead; a missing or bad token is refused with a
// problem document and WWW-Authenticate.
func TestAuthStripAndInject(t *testing.T) {
	e := start(t)
	body, code, _ := e.curl(t, e.token, "-H", "X-Forwarded-For: 6.6.6.6", e.url+"/orders/things/1?b=2&a=1")
	require.Equal(t, 200, code, body)
	got := decodeEcho(t, body)
	require.Equal(t, "Bearer "+upstreamSecret, got.Authorization)
	require.NotContains(t, body, e.token)
	require.Equal(t, "/things/1", got.Path)
	require.Equal(t, "b=2&a=1", got.Query)
	require.NotContains(t, got.Xff, "6.6.6.6", "a client's X-Forwarded-For is replaced, not trusted")

	body, code, _ = e.curl(t, "", "-i", e.url+"/orders/things")
	require.Equal(t, 401, code)
	require.Contains(t, strings.ToLower(body), "www-authenticate: bearer")
	require.Contains(t, body, "application/problem+json")
	body, code, _ = e.curl(t, "not-a-token", e.url+"/orders/things")
	require.Equal(t, 401, code)
	require.Contains(t, body, "token rejected")
	body, code, _ = e.curl(t, e.token, e.url+"/nowhere/x")
	require.Equal(t, 404, code, body)

	// By host name too.
	body, code, _ = e.curl(t, e.token, "--resolve", "orders.internal:"+port(e.addr)+":127.0.0.1", "-k", "https://orders.internal:"+port(e.addr)+"/x")
	require.Equal(t, 200, code, body)
	require.Equal(t, "/x", decodeEcho(t, body).Path)

	evs := e.events(t, "orders", func(evs []schemas.Event) bool { return hasType(evs, schemas.TypeHttpDone, nil) })
	reqs := ofType[schemas.HttpRequest](t, evs, schemas.TypeHttpRequest)
	require.NotEmpty(t, reqs)
	for _, ev := range evs {
		require.NotContains(t, string(ev.Payload), e.token, "the token is never recorded")
		if ev.Type != schemas.TypeHttpBody { // (the test's service echoes the credential it got in its body)
			require.NotContains(t, string(ev.Payload), upstreamSecret, "nor the service's credential")
		}
	}
	require.Contains(t, reqs[0].Headers, "authorization: [redacted]")
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// TestDenyWithProblemDocument: a denied request never reaches the service; the caller gets
// an RFC 9457 document with the rule's reason.
func TestDenyWithProblemDocument(t *testing.T) {
	e := start(t)
	n := len(e.up.seen)
	body, code, _ := e.curl(t, e.token, "-X", "DELETE", e.url+"/orders/customers/1")
	require.Equal(t, 403, code)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Equal(t, "deletes go through the change process", p["detail"])
	require.EqualValues(t, 403, p["status"])
	require.Equal(t, "no-deletes", p["rule"])
	require.Len(t, e.up.seen, n, "a denied request does not reach the service")
	evs := e.events(t, "orders", func(evs []schemas.Event) bool {
		return hasType(evs, schemas.TypeHttpDone, func(p json.RawMessage) bool { return strings.Contains(string(p), `"denied"`) })
	})
	ds := ofType[schemas.Decision](t, evs, schemas.TypeDecision)
	require.Equal(t, schemas.EffectDeny, ds[len(ds)-1].Effect)
}

// TestPathTricks: the path decided is the path forwarded; what servers disagree on is
// refused.
func TestPathTricks(t *testing.T) {
	e := start(t)
	// Dot segments and encodings are resolved before the decision: /x/../admin is /admin.
	body, code, _ := e.curl(t, e.token, "--path-as-is", e.url+"/orders/x/../admin/users")
	require.Equal(t, 403, code, body)
	require.Contains(t, body, "the admin API is closed")
	body, code, _ = e.curl(t, e.token, "--path-as-is", e.url+"/orders/x/%2e%2e/%61dmin")
	require.Equal(t, 403, code, body)
	// Climbing out of the resource's prefix lands in another (or none), decided as such.
	body, code, _ = e.curl(t, e.token, "--path-as-is", e.url+"/orders/../nowhere")
	require.Equal(t, 404, code, body)
	for _, p := range []string{"/orders/a%2Fb", "/orders/a%5Cb", "/orders/%252e%252e/admin", "/orders/admin;x/users", "/orders/a%00b"} {
		body, code, _ = e.curl(t, e.token, "--path-as-is", e.url+p)
		require.Equal(t, 400, code, "%s: %s", p, body)
	}
	// What was forwarded is the normalised path.
	body, code, _ = e.curl(t, e.token, "--path-as-is", e.url+"/orders//a/./b%20c/")
	require.Equal(t, 200, code, body)
	got := decodeEcho(t, body)
	require.Equal(t, "/a/b c/", got.Path)
	// A query with a ';' separator is refused (servers disagree).
	_, code, _ = e.curl(t, e.token, e.url+"/orders/a?x=1;y=2")
	require.Equal(t, 400, code)
}

// TestSmuggling: conflicting framing is read one way, and what the gateway read is what it
// decides and forwards (in its own framing): a request hidden in a body is a request of its
// own, decided as such, never a second request to the service behind the policy's back.
func TestSmuggling(t *testing.T) {
	e := start(t)
	n := len(e.up.seen)
	c := e.rawConn(t)
	req := "POST /orders/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + e.token + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /orders/admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + e.token + "\r\n\r\n"
	_, err := io.WriteString(c, req)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var codes []int
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		codes = append(codes, resp.StatusCode)
	}
	require.NotEmpty(t, codes)
	if len(codes) > 1 {
		require.Equal(t, 403, codes[1], "the hidden request is decided: /admin is denied")
	}
	e.up.mu.Lock()
	for _, r := range e.up.seen[n:] {
		require.NotEqual(t, "/admin", r.URL.Path)
		require.Empty(t, r.Header.Values("Transfer-Encoding"), "the service gets the gateway's own framing")
	}
	e.up.mu.Unlock()

	// Two Content-Lengths that disagree are refused.
	c2 := e.rawConn(t)
	io.WriteString(c2, "POST /orders/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+e.token+"\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd")
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	require.NoError(t, err)
	require.Equal(t, 400, resp.StatusCode)
}

// TestLimits: oversized headers and bodies, a client that sends its headers too slowly.
func TestLimits(t *testing.T) {
	e := start(t)
	_, code, _ := e.curl(t, e.token, "--http1.1", "-H", "X-Big: "+strings.Repeat("a", 20<<10), e.url+"/orders/x")
	require.Equal(t, 431, code)
	big := strings.Repeat("a", 9<<20)
	f := t.TempDir() + "/big"
	require.NoError(t, os.WriteFile(f, []byte(big), 0o600))
	_, code, _ = e.curl(t, e.token, "-X", "POST", "--data-binary", "@"+f, e.url+"/orders/upload")
	require.Equal(t, 413, code)
	// Malformed JSON is refused before any decision.
	body, code, _ := e.curl(t, e.token, "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"amount": 10,`, e.url+"/orders/payments")
	require.Equal(t, 400, code, body)
	body, code, _ = e.curl(t, e.token, "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"amount": 10, "amount": 5000}`, e.url+"/orders/payments")
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "duplicate key")
	// Member names are read without regard to case (a Go service reads "AMOUNT" as amount):
	// rules see them folded, and two names that fold alike are refused.
	for _, b := range []string{`{"AMOUNT": 200000}`, `{"Amount": 200000}`, "{\"\u212Aey\": 1, \"amount\": 200000}"} {
		body, code, _ = e.curl(t, e.token, "-X", "POST", "-H", "Content-Type: application/json", "--data", b, e.url+"/orders/payments")
		require.Equal(t, 403, code, "%s: %s", b, body)
		require.Contains(t, body, "payments over 100000 are refused")
	}
	body, code, _ = e.curl(t, e.token, "-X", "POST", "-H", "Content-Type: text/plain", "--data", `{"amount": 5, "AMOUNT": 200000}`, e.url+"/orders/payments")
	require.Equal(t, 400, code, body)
	// Slowloris: headers trickling in are cut off at the read-header timeout.
	c := e.rawConn(t)
	io.WriteString(c, "GET /orders/x HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, err := io.WriteString(c, "X-A: b\r\n"); err != nil {
			break
		}
		buf := make([]byte, 1)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(buf); err != nil && !isTimeout(err) {
			break
		}
		require.Less(t, time.Since(start), 25*time.Second, "a slow client was never cut off")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(interface{ Timeout() bool })
	return ok && ne.Timeout()
}

// TestMaskNestedJSON: fields by path and detected values elsewhere are masked in the
// response and in the trail.
func TestMaskNestedJSON(t *testing.T) {
	e := start(t)
	body, code, _ := e.curl(t, e.token, e.url+"/orders/customers")
	require.Equal(t, 200, code, body)
	require.True(t, json.Valid([]byte(body)), body)
	require.NotContains(t, body, "4111 1111 1111 1111")
	require.NotContains(t, body, "4111111111111111")
	require.NotContains(t, body, "5500 0000 0000 0004")
	require.NotContains(t, body, "123-45-6789")
	require.Contains(t, body, `"name":"Ann"`)
	evs := e.events(t, "orders", func(evs []schemas.Event) bool { return hasType(evs, schemas.TypeHttpDone, nil) })
	bodies := ofType[schemas.HttpBody](t, evs, schemas.TypeHttpBody)
	require.NotEmpty(t, bodies)
	var masked uint64
	for _, b := range bodies {
		require.NotContains(t, b.Data, "4111")
		for _, m := range b.Masked {
			masked += m.Count
		}
	}
	require.GreaterOrEqual(t, masked, uint64(4))
	done := ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone)
	require.Equal(t, "ok", done[0].Status)

	// Fields are masked by path in JSON only: a response of another type that a rule masks
	// by field is not sent (fail closed), even if the detectors would pass it.
	body, code, _ = e.curl(t, e.token, e.url+"/orders/text")
	require.Equal(t, 502, code, body)
	require.NotContains(t, body, "Ann")
}

// TestMaskStreamed100MB: a 100 MB response is masked as it streams — the first part
// reaches the client while the service still holds the rest back.
func TestMaskStreamed100MB(t *testing.T) {
	e := start(t)
	req, err := http.NewRequest("GET", e.url+"/orders/big?wait=1", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	// The first thousand records arrive before the service sends more.
	head := make([]byte, 200<<10)
	_, err = io.ReadFull(resp.Body, head)
	require.NoError(t, err)
	require.NotContains(t, string(head), "4111 1111")
	e.up.steps <- struct{}{}
	n := int64(len(head))
	buf := make([]byte, 1<<20)
	var tail []byte
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if k > 0 {
			chunk := buf[:k]
			require.NotContains(t, string(append(tail, chunk...)), "4111 1111 1111 1111")
			tail = append(tail[:0], chunk[max(0, k-32):]...)
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.Greater(t, n, int64(95<<20), "about 100 MB went through")
}

// TestSSE: server-sent events pass event by event (each reaches the client before the
// service sends the next), masked.
func TestSSE(t *testing.T) {
	e := start(t)
	req, _ := http.NewRequest("GET", e.url+"/orders/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		var ev strings.Builder
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			if line == "\n" {
				break
			}
			ev.WriteString(line)
		}
		require.Contains(t, ev.String(), fmt.Sprintf("event %d", i))
		require.NotContains(t, ev.String(), "4111111111111111")
		if i < 2 {
			e.up.steps <- struct{}{}
		}
	}
}

// TestWebSocket: an upgrade passes after the decision, its messages recorded.
func TestWebSocket(t *testing.T) {
	e := start(t)
	pem, _ := os.ReadFile(e.caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c, resp, err := d.Dial("wss://"+e.addr+"/orders/ws", http.Header{"Authorization": {"Bearer " + e.token}})
	require.NoError(t, err, "%v", resp)
	defer c.Close()
	for i := 0; i < 3; i++ {
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("hello %d", i))))
		_, p, err := c.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("echo: hello %d", i), string(p))
	}
	c.Close()
	evs := e.events(t, "orders", func(evs []schemas.Event) bool {
		n := 0
		for _, w := range ofType[schemas.HttpWs](t, evs, schemas.TypeHttpWs) {
			n += len(w.Frames)
		}
		return n >= 6
	})
	var frames []schemas.WSFrame
	for _, w := range ofType[schemas.HttpWs](t, evs, schemas.TypeHttpWs) {
		frames = append(frames, w.Frames...)
	}
	require.Equal(t, "client", frames[0].From)
	require.Equal(t, "hello 0", frames[0].Data)
	require.Equal(t, "server", frames[1].From)
	require.Equal(t, "echo: hello 0", frames[1].Data)
}

// TestRevokeLongStream: a revocation ends a long-lived response at once.
func TestRevokeLongStream(t *testing.T) {
	e := start(t)
	tok := e.mint(identity.TokenRequest{Subject: "svc-stream", Groups: []string{"billing"}})
	req, _ := http.NewRequest("GET", e.url+"/orders/forever", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	_, err = r.ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, bus.PublishRevocation(t.Context(), e.bus.JS, schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "svc-stream", Reason: "incident", By: "sec", At: time.Now()}, schemas.Identity{Subject: "sec"}))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			break
		}
	}
	evs := e.events(t, "orders", func(evs []schemas.Event) bool {
		return hasType(evs, schemas.TypeHttpDone, func(p json.RawMessage) bool { return strings.Contains(string(p), `"revoked"`) })
	})
	require.True(t, hasType(evs, schemas.TypeSessionTerminated, nil))
	// And the token is refused from now on.
	_, code, _ := e.curl(t, tok, e.url+"/orders/x")
	require.Equal(t, 403, code)
}
