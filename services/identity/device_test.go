package identity

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// deviceIssuer serves a development issuer whose device flow runs on a clock the test
// moves.
type deviceIssuer struct {
	d   *DevIssuer
	url string
	mu  sync.Mutex
	now time.Time
}

func newDeviceIssuer(t *testing.T) *deviceIssuer {
	t.Helper()
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	d, err := NewDevIssuer(srv.URL+DevIssuerPath, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	d.Register(e)
	di := &deviceIssuer{d: d, url: srv.URL, now: time.Now()}
	d.devices.now = func() time.Time {
		di.mu.Lock()
		defer di.mu.Unlock()
		return di.now
	}
	return di
}

func (di *deviceIssuer) advance(d time.Duration) {
	di.mu.Lock()
	di.now = di.now.Add(d)
	di.mu.Unlock()
}

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func (di *deviceIssuer) start(t *testing.T) map[string]any {
	t.Helper()
	code, out := postForm(t, di.d.Issuer()+"/device/code", url.Values{"client_id": {"gatehouse-cli"}, "scope": {"openid"}})
	require.Equal(t, http.StatusOK, code, out)
	return out
}

// poll asks the token endpoint once and returns the OAuth error ("" on success) and the
// answer.
func (di *deviceIssuer) poll(t *testing.T, deviceCode string) (string, map[string]any) {
	t.Helper()
	code, out := postForm(t, di.d.Issuer()+"/token", url.Values{"grant_type": {DeviceGrantType}, "device_code": {deviceCode}, "client_id": {"gatehouse-cli"}})
	if code == http.StatusOK {
		return "", out
	}
	require.Equal(t, http.StatusBadRequest, code, out)
	return out["error"].(string), out
}

var formToken = regexp.MustCompile(`name="form_token" value="([^"]+)"`)

// approvalPage fetches the verification page and returns the form's token.
func approvalPage(t *testing.T, pageURL string) string {
	t.Helper()
	resp, err := http.Get(pageURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	m := formToken.FindStringSubmatch(string(b))
	require.NotNil(t, m, string(b))
	return m[1]
}

func TestDeviceFlow(t *testing.T) {
	di := newDeviceIssuer(t)
	// Discovery announces the endpoint.
	resp, err := http.Get(di.d.Issuer() + "/.well-known/openid-configuration")
	require.NoError(t, err)
	var disc map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&disc))
	resp.Body.Close()
	require.Equal(t, di.d.Issuer()+"/device/code", disc["device_authorization_endpoint"])
	require.Contains(t, disc["grant_types_supported"], DeviceGrantType)

	start := di.start(t)
	require.Regexp(t, `^[B-Z]{4}-[B-Z]{4}$`, start["user_code"])
	require.Equal(t, di.d.Issuer()+"/device", start["verification_uri"])
	require.Equal(t, di.d.Issuer()+"/device?user_code="+start["user_code"].(string), start["verification_uri_complete"])
	require.EqualValues(t, 600, start["expires_in"])
	require.EqualValues(t, 1, start["interval"])
	dc := start["device_code"].(string)

	e, _ := di.poll(t, dc)
	require.Equal(t, "authorization_pending", e)
	// Polling again at once: slow down, and the interval grows by 5 s.
	e, out := di.poll(t, dc)
	require.Equal(t, "slow_down", e)
	require.Contains(t, out["error_description"], "6s")
	di.advance(2 * time.Second)
	e, out = di.poll(t, dc)
	require.Equal(t, "slow_down", e, "the interval is 6 s now")
	require.Contains(t, out["error_description"], "11s")
	di.advance(12 * time.Second)
	e, _ = di.poll(t, dc)
	require.Equal(t, "authorization_pending", e)

	// The person approves, typing the code in lower case without the dash.
	typed := strings.ToLower(strings.ReplaceAll(start["user_code"].(string), "-", ""))
	tok := approvalPage(t, di.d.Issuer()+"/device?user_code="+typed)
	// Without the form's token, or from another origin: refused.
	form := url.Values{"user_code": {typed}, "action": {"approve"}, "sub": {"ada"}, "name": {"Ada <script>"}, "groups": {"ops, dba"}}
	r, err := http.PostForm(di.d.Issuer()+"/device", form)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusForbidden, r.StatusCode)
	form.Set("form_token", tok)
	req, _ := http.NewRequest(http.MethodPost, di.d.Issuer()+"/device", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	r, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusForbidden, r.StatusCode)
	r, err = http.PostForm(di.d.Issuer()+"/device", form)
	require.NoError(t, err)
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	require.Equal(t, http.StatusOK, r.StatusCode, string(page))
	require.Contains(t, string(page), "Signed in as ada")

	di.advance(12 * time.Second)
	e, out = di.poll(t, dc)
	require.Empty(t, e, out)
	require.Equal(t, "Bearer", out["token_type"])
	require.EqualValues(t, 3600, out["expires_in"])
	v := NewVerifier(t.Context(), []config.Issuer{{Issuer: di.d.Issuer(), Audience: DevAudience, GroupsClaim: "groups"}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	id, err := v.Verify(t.Context(), out["access_token"].(string))
	require.NoError(t, err)
	require.Equal(t, "ada", id.Subject)
	require.Equal(t, "Ada <script>", id.Name)
	require.Equal(t, []string{"ops", "dba"}, id.Groups)
	require.Equal(t, "human", id.Kind)

	// A device code gives one token; the page no longer offers the code.
	di.advance(12 * time.Second)
	e, _ = di.poll(t, dc)
	require.Equal(t, "invalid_grant", e)
	resp, err = http.Get(di.d.Issuer() + "/device?user_code=" + typed)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestDevicePageEscapes(t *testing.T) {
	di := newDeviceIssuer(t)
	start := di.start(t)
	tok := approvalPage(t, start["verification_uri_complete"].(string))
	form := url.Values{"user_code": {start["user_code"].(string)}, "form_token": {tok}, "action": {"approve"},
		"sub": {"<b>x</b>"}, "ttl": {"forever"}}
	r, err := http.PostForm(di.d.Issuer()+"/device", form)
	require.NoError(t, err)
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	require.Equal(t, http.StatusBadRequest, r.StatusCode)
	require.Contains(t, string(page), "is not a positive duration")
	require.NotContains(t, string(page), "<b>x</b>")
	require.Contains(t, string(page), "&lt;b&gt;x&lt;/b&gt;")
}

func TestDeviceDeniedAndExpired(t *testing.T) {
	di := newDeviceIssuer(t)
	start := di.start(t)
	tok := approvalPage(t, start["verification_uri_complete"].(string))
	r, err := http.PostForm(di.d.Issuer()+"/device", url.Values{"user_code": {start["user_code"].(string)}, "form_token": {tok}, "action": {"deny"}})
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusOK, r.StatusCode)
	e, _ := di.poll(t, start["device_code"].(string))
	require.Equal(t, "access_denied", e)

	start = di.start(t)
	di.advance(deviceCodeTTL + time.Second)
	e, out := di.poll(t, start["device_code"].(string))
	require.Equal(t, "expired_token", e)
	require.Contains(t, out["error_description"], "start the sign-in again")
	// An expired code cannot be approved either.
	resp, err := http.Get(start["verification_uri_complete"].(string))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	code, out := postForm(t, di.d.Issuer()+"/device/code", url.Values{})
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "invalid_request", out["error"])
}

func TestDeviceCodesAreBounded(t *testing.T) {
	di := newDeviceIssuer(t)
	di.d.devices.max = 5
	for range 5 {
		di.start(t)
	}
	code, out := postForm(t, di.d.Issuer()+"/device/code", url.Values{"client_id": {"gatehouse-cli"}})
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "temporarily_unavailable", out["error"])
	// Once they expire, there is room again.
	di.advance(deviceCodeTTL + time.Second)
	di.start(t)
	di.d.devices.mu.Lock()
	n := len(di.d.devices.byDevice)
	di.d.devices.mu.Unlock()
	require.Equal(t, 1, n)
}

func TestDeviceEndpointsAreLoopbackOnly(t *testing.T) {
	e := echo.New()
	d, err := NewDevIssuer("http://gw.example/dev/oidc", t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	d.Register(e)
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodPost, DevIssuerPath+"/device/code", strings.NewReader("client_id=x")),
		httptest.NewRequest(http.MethodGet, DevIssuerPath+"/device?user_code=BBBB-BBBB", nil),
		httptest.NewRequest(http.MethodPost, DevIssuerPath+"/device", nil),
		httptest.NewRequest(http.MethodPost, DevIssuerPath+"/token", strings.NewReader("grant_type="+url.QueryEscape(DeviceGrantType))),
	} {
		r.RemoteAddr = "192.0.2.7:4444"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		require.Equal(t, http.StatusForbidden, w.Code, r.URL.Path)
	}
}

// A page under another site's name that a DNS rebinding points at 127.0.0.1 reaches the
// issuer from loopback, but names its own host: it mints nothing.
func TestDevIssuerRefusesForeignHostNames(t *testing.T) {
	e := echo.New()
	d, err := NewDevIssuer("http://127.0.0.1:8080/dev/oidc", t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	d.Register(e)
	mint := func(host string) int {
		r := httptest.NewRequest(http.MethodPost, DevIssuerPath+"/token", strings.NewReader("sub=admin&groups=gatehouse-admins"))
		r.RemoteAddr = "127.0.0.1:4444"
		r.Host = host
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		return w.Code
	}
	for _, h := range []string{"evil.example:8080", "evil.example", "127.0.0.1.evil.example:8080", "localhost.evil.example"} {
		require.Equal(t, http.StatusForbidden, mint(h), h)
	}
	for _, h := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.1"} {
		require.Equal(t, http.StatusOK, mint(h), h)
	}
}
