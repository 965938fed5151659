// Debian's nginx as a second upstream: a real static file server that sends
// Content-Length, ETag and Last-Modified, answers conditional requests with 304 and Range
// requests with 206 — what a Go handler written for the tests does not.

package http_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localnginx"
	"github.com/gatehouse/gatehouse/services/dev/localnginx/nginxtest"
)

// nginxCustomers is the JSON document nginx serves as /customers.json: card numbers where
// the rules mask them by path ($.customers[*].card_number) and where only the card
// detector finds them (a note).
const nginxCustomers = `{"customers":[` +
	`{"id":1,"name":"Ann","card_number":"4111 1111 1111 1111","contact":{"ssn":"123-45-6789","note":"card on file 4111111111111111"}},` +
	`{"id":2,"name":"Bo","card_number":"5500 0000 0000 0004"}],"total":2}`

// nginxEnv is the harness's gateway with one more resource, orders-nginx (which the test
// policy covers like orders), under the prefix /nginx, in front of nginx serving
// customers.json and big.json (records with card numbers, about size bytes).
type nginxEnv struct {
	*env
	nginx *localnginx.Nginx
	big   int64 // big.json's length
}

func startNginx(t *testing.T, bigRecords int) *nginxEnv {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "customers.json"), []byte(nginxCustomers), 0o644))
	var b strings.Builder
	b.WriteString(`{"customers":[`)
	for i := 0; i < bigRecords; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"Customer %d","card_number":"4111 1111 1111 1111","notes":"paid with 5500000000000004 %s"}`, i, i, strings.Repeat("x", 400))
	}
	b.WriteString(`]}`)
	require.NoError(t, os.WriteFile(filepath.Join(root, "big.json"), []byte(b.String()), 0o644))
	ng := nginxtest.Start(t, localnginx.Config{Root: root, Workers: 1})
	e := start(t)
	be := *e.resource["orders"].HTTP
	be.URL, be.PathPrefix = ng.URL, "/nginx"
	e.addResource(&config.Resource{Name: "orders-nginx", Type: "http", Audit: "strict", HTTP: &be})
	return &nginxEnv{env: e, nginx: ng, big: int64(b.Len())}
}

// curlHead runs curl through the gateway and returns the body, the status and the
// response's headers.
func (e *nginxEnv) curlHead(t *testing.T, args ...string) (string, int, http.Header) {
	t.Helper()
	hf := filepath.Join(t.TempDir(), "headers")
	body, code, stderr := e.curl(t, e.token, append([]string{"-D", hf}, args...)...)
	raw, err := os.ReadFile(hf)
	require.NoError(t, err, "curl wrote no headers: %s", stderr)
	// The last response's headers (a 100 Continue may come first).
	blocks := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(raw), "\r\n", "\n")), "\n\n")
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(blocks[len(blocks)-1] + "\n\n")))
	_, err = tp.ReadLine() // status line
	require.NoError(t, err)
	h, err := tp.ReadMIMEHeader()
	require.NoError(t, err)
	return body, code, http.Header(h)
}

// direct asks nginx itself, for the headers it sends.
func (e *nginxEnv) direct(t *testing.T, path string) http.Header {
	t.Helper()
	resp, err := http.Head(e.nginx.URL + path)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	return resp.Header
}

func noCards(t *testing.T, body string) {
	t.Helper()
	for _, c := range []string{"4111 1111 1111 1111", "4111111111111111", "5500 0000 0000 0004", "5500000000000004", "123-45-6789"} {
		require.NotContains(t, body, c)
	}
}

// TestNginxMaskedJSON: nginx's document is masked by path and by detector, and the
// Content-Length nginx sends (the clear document's) is not passed on with the masked one.
func TestNginxMaskedJSON(t *testing.T) {
	e := startNginx(t, 10)
	up := e.direct(t, "/customers.json")
	require.Equal(t, strconv.Itoa(len(nginxCustomers)), up.Get("Content-Length"), "nginx sends the length")
	require.NotEmpty(t, up.Get("Etag"))

	body, code, h := e.curlHead(t, e.url+"/nginx/customers.json")
	require.Equal(t, 200, code, body)
	noCards(t, body)
	require.Contains(t, body, `"name":"Ann"`)
	require.Contains(t, body, `"total":2`)
	if cl := h.Get("Content-Length"); cl != "" {
		require.Equal(t, strconv.Itoa(len(body)), cl, "a length, if any, is the masked body's")
	}
	require.NotEqual(t, up.Get("Etag"), h.Get("Etag"), "the masked representation is not the file nginx tags")
	require.Equal(t, "application/json", h.Get("Content-Type"))

	evs := e.events(t, "orders-nginx", func(evs []schemas.Event) bool { return hasType(evs, schemas.TypeHttpDone, nil) })
	for _, b := range ofType[schemas.HttpBody](t, evs, schemas.TypeHttpBody) {
		noCards(t, b.Data)
	}
	done := ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone)
	require.Equal(t, "ok", done[0].Status)
	require.GreaterOrEqual(t, done[0].Masked, uint64(4))
}

// TestNginxHead: HEAD of a masked file passes with no body, and carries neither the clear
// document's length nor nginx's ETag (a GET of the same resource carries neither).
func TestNginxHead(t *testing.T) {
	e := startNginx(t, 10)
	up := e.direct(t, "/customers.json")
	_, code, h := e.curlHead(t, "-I", "-o", "/dev/null", e.url+"/nginx/customers.json")
	require.Equal(t, 200, code)
	require.Equal(t, "application/json", h.Get("Content-Type"))
	require.NotEqual(t, up.Get("Content-Length"), h.Get("Content-Length"), "the clear document's length")
	require.Empty(t, h.Get("Etag"), "the service's ETag")
}

// TestNginxConditional: a conditional request that nginx answers 304 passes as 304, with no
// body; one that does not match gets the masked document.
func TestNginxConditional(t *testing.T) {
	e := startNginx(t, 10)
	up := e.direct(t, "/customers.json")
	etag, lm := up.Get("Etag"), up.Get("Last-Modified")

	body, code, _ := e.curlHead(t, "-H", "If-None-Match: "+etag, e.url+"/nginx/customers.json")
	require.Equal(t, 304, code, body)
	require.Empty(t, body)
	body, code, _ = e.curlHead(t, "-H", "If-Modified-Since: "+lm, e.url+"/nginx/customers.json")
	require.Equal(t, 304, code, body)
	require.Empty(t, body)

	body, code, _ = e.curlHead(t, "-H", `If-None-Match: "other"`, e.url+"/nginx/customers.json")
	require.Equal(t, 200, code, body)
	noCards(t, body)
	require.Contains(t, body, `"name":"Bo"`)
}

// TestNginxRangeOnMasked: a Range request on a masked resource must not get a slice of the
// clear document (a slice can cut a card number so that neither the path nor the detector
// recognises it). Whatever the gateway answers — the whole masked document, a refusal —
// no digit run of a card number comes out.
// The gateway asks the service for the whole document and masks it (found leaking
// before: it forwarded Range and passed nginx's 206 slice of the clear document).
func TestNginxRangeOnMasked(t *testing.T) {
	e := startNginx(t, 10)
	// Ranges that start inside the first card number, and one inside the note's.
	at := strings.Index(nginxCustomers, "4111 1111")
	note := strings.Index(nginxCustomers, "4111111111111111")
	var leaks []string
	for _, r := range []string{
		fmt.Sprintf("%d-%d", at+5, at+18),
		fmt.Sprintf("%d-%d", at+2, at+60),
		fmt.Sprintf("%d-%d", note+4, note+15),
		fmt.Sprintf("0-10,%d-%d", at+5, at+18),
		fmt.Sprintf("-%d", len(nginxCustomers)-at-5),
	} {
		body, code, h := e.curlHead(t, "-r", r, e.url+"/nginx/customers.json")
		t.Logf("Range %s: %d %q (Content-Range %q)", r, code, body, h.Get("Content-Range"))
		if code == 206 {
			leaks = append(leaks, fmt.Sprintf("Range %s → 206 %q", r, body))
			continue
		}
		require.NotContains(t, body, "1111 1111", "Range %s", r)
		require.NotContains(t, body, "11111111", "Range %s", r)
		require.NotContains(t, body, "0000 0004", "Range %s", r)
	}
	require.Empty(t, leaks, "a slice of the clear document went out")
}

// TestNginxBigMaskedStream: a large file from nginx (Content-Length, sendfile) is masked
// as it streams through to curl.
func TestNginxBigMaskedStream(t *testing.T) {
	e := startNginx(t, 40000) // about 20 MB
	body, code, h := e.curlHead(t, e.url+"/nginx/big.json")
	require.Equal(t, 200, code, body[:min(len(body), 500)])
	require.Empty(t, h.Get("Content-Length"), "the clear file's length does not go out with the masked body")
	require.Greater(t, int64(len(body)), e.big*9/10, "about the whole file went through")
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	sc.Split(splitAt('}'))
	records := 0
	for sc.Scan() {
		rec := sc.Text()
		noCards(t, rec)
		if strings.Contains(rec, `"name":"Customer `) {
			records++
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, 40000, records)
}

// splitAt splits a stream after each sep (records of a large document, without holding it).
func splitAt(sep byte) bufio.SplitFunc {
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if i := strings.IndexByte(string(data), sep); i >= 0 {
			return i + 1, data[:i+1], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}
