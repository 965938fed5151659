package cli

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/sshca"
)

// hostileIssuer is a gateway and its issuer in one loopback server, answering whatever the
// test sets: discovery overrides, the device authorization answer, the token answer.
type hostileIssuer struct {
	url       string
	mu        sync.Mutex
	discovery map[string]string
	device    map[string]any
	token     func() any
}

func newHostileIssuer(t *testing.T) *hostileIssuer {
	t.Helper()
	h := &hostileIssuer{discovery: map[string]string{}}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h.url = srv.URL
	mux.HandleFunc("/api/v1/login", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(sshca.LoginInfo{Issuer: h.url, ClientID: "gatehouse-cli", Scopes: []string{"openid"}})
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		doc := map[string]string{"issuer": h.url, "token_endpoint": h.url + "/token", "authorization_endpoint": h.url + "/authorize"}
		for k, v := range h.discovery {
			doc[k] = v
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		_ = json.NewEncoder(w).Encode(h.device)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		answer := h.token()
		h.mu.Unlock()
		if m, ok := answer.(map[string]any); ok && m["error"] != nil {
			w.WriteHeader(http.StatusBadRequest)
		}
		_ = json.NewEncoder(w).Encode(answer)
	})
	return h
}

// testJWT is an unsigned JWT with these claims (the CLI reads claims, the gateway verifies).
func testJWT(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// recordBrowser replaces openBrowser for the test; it returns what was asked to be opened.
func recordBrowser(t *testing.T) func() []string {
	var mu sync.Mutex
	var opened []string
	prev := openBrowser
	openBrowser = func(u string) { mu.Lock(); opened = append(opened, u); mu.Unlock() }
	t.Cleanup(func() { openBrowser = prev })
	return func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), opened...) }
}

// An endpoint from discovery that is not https (or http to this machine) is neither called
// nor opened in a browser: a file:, UNC or custom-scheme URL would run what the desktop
// runs for it, plain http to another machine would carry the code or token in clear.
func TestLoginRefusesUnsafeIssuerEndpoints(t *testing.T) {
	for _, tc := range []struct {
		field, value string
		device       bool
	}{
		{"authorization_endpoint", "file:///etc/passwd", false},
		{"authorization_endpoint", `\\evil.example.com\share\run.exe`, false},
		{"authorization_endpoint", "ms-settings:display", false},
		{"authorization_endpoint", "vscode://evil/open?x=1", false},
		{"authorization_endpoint", "http://evil.example.com/authorize", false},
		{"authorization_endpoint", "javascript:alert(1)//127.0.0.1", false},
		{"token_endpoint", "http://evil.example.com/token", false},
		{"token_endpoint", "ftp://127.0.0.1/token", false},
		{"device_authorization_endpoint", "file:///tmp/x", true},
		{"device_authorization_endpoint", "http://10.1.2.3/device", true},
	} {
		t.Run(tc.field+" "+tc.value, func(t *testing.T) {
			signInEnv(t)
			h := newHostileIssuer(t)
			h.discovery[tc.field] = tc.value
			h.device = map[string]any{"device_code": "d", "user_code": "U", "verification_uri": h.url + "/verify", "interval": 1}
			h.token = func() any { return map[string]any{"error": "authorization_pending"} }
			opened := recordBrowser(t)
			args := []string{"login", "--server", h.url}
			if tc.device {
				args = append(args, "--device")
			}
			_, errOut, done := runAsync(args...)
			require.Equal(t, 1, exitCode(t, done, errOut), errOut.String())
			require.Contains(t, errOut.String(), "the issuer's "+tc.field+" ")
			require.Contains(t, errOut.String(), "is refused")
			require.NotContains(t, errOut.String(), "To sign in")
			require.Empty(t, opened())
		})
	}
}

// Signing in to a gateway over plain http to another machine is refused before anything
// is sent: the token would travel in clear.
func TestLoginRefusesPlainHTTPServer(t *testing.T) {
	signInEnv(t)
	code, _, errOut := run("login", "--server", "http://gatehouse.example.com:8080")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "refusing to sign in to http://gatehouse.example.com:8080")
	require.Contains(t, errOut, "the token would travel in clear")
	t.Setenv("GATEHOUSE_URL", "http://10.0.0.7:8080")
	code, _, errOut = run("login")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "refusing to sign in to http://10.0.0.7:8080")
	for _, ok := range []string{"https://gatehouse.example.com", "http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"} {
		require.NoError(t, checkLoginServer(ok), ok)
	}
}

// What the issuer says reaches the terminal without its escape sequences.
func TestSignInEscapesIssuerStrings(t *testing.T) {
	signInEnv(t)
	h := newHostileIssuer(t)
	h.discovery["device_authorization_endpoint"] = h.url + "/device"
	h.device = map[string]any{"device_code": "d", "user_code": "\x1b]52;c;cHduZWQ=\x07WXYZ", "verification_uri": h.url + "/v\x1b[2J",
		"verification_uri_complete": h.url + "/v?c=\u009b31m", "interval": 1}
	h.token = func() any {
		return map[string]any{"error": "\x1b[31mboom", "error_description": "\x1b]0;owned\x07 title"}
	}
	_, errOut, done := runAsync("login", "--server", h.url, "--device")
	require.Equal(t, 1, exitCode(t, done, errOut), errOut.String())
	out := errOut.String()
	require.Contains(t, out, `\x1b]52;c;cHduZWQ=\aWXYZ`)
	require.Contains(t, out, `/v\x1b[2J`)
	require.Contains(t, out, `\u009b31m`)
	require.Contains(t, out, `sign-in failed: \x1b[31mboom: \x1b]0;owned\a title`)
	require.False(t, strings.ContainsAny(out, "\x1b\x07\u009b"), "raw control characters reached the terminal: %q", out)
}

// browserCallback runs `gatehouse login --no-browser` against h and answers its redirect
// with query (state added); it returns the exit code and stderr, and the nonce sent.
func browserCallback(t *testing.T, h *hostileIssuer, query url.Values, idClaims func(nonce string) map[string]any) (int, string) {
	t.Helper()
	var nonce string
	var mu sync.Mutex
	h.token = func() any {
		mu.Lock()
		defer mu.Unlock()
		return map[string]any{"access_token": testJWT(map[string]any{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()}),
			"id_token": testJWT(idClaims(nonce)), "expires_in": 3600}
	}
	_, errOut, done := runAsync("login", "--server", h.url, "--no-browser")
	authURL := waitFor(t, errOut, regexp.MustCompile(`(http://\S+/authorize\?\S+)`))
	u, err := url.Parse(authURL)
	require.NoError(t, err)
	mu.Lock()
	nonce = u.Query().Get("nonce")
	mu.Unlock()
	query.Set("state", u.Query().Get("state"))
	resp, err := http.Get(u.Query().Get("redirect_uri") + "?" + query.Encode())
	require.NoError(t, err)
	resp.Body.Close()
	return exitCode(t, done, errOut), errOut.String()
}

// An ID token must carry the nonce this sign-in sent: none, or another, is refused.
func TestLoginIDTokenMustCarryTheNonce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims func(nonce string) map[string]any
		ok     bool
	}{
		{"no nonce", func(string) map[string]any { return map[string]any{"sub": "ann"} }, false},
		{"another nonce", func(string) map[string]any { return map[string]any{"sub": "ann", "nonce": "replayed"} }, false},
		{"a number", func(string) map[string]any { return map[string]any{"sub": "ann", "nonce": 7} }, false},
		{"the nonce sent", func(n string) map[string]any { return map[string]any{"sub": "ann", "nonce": n} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := signInEnv(t)
			h := newHostileIssuer(t)
			code, errOut := browserCallback(t, h, url.Values{"code": {"c0de"}}, tc.claims)
			if tc.ok {
				require.Equal(t, 0, code, errOut)
				require.Equal(t, h.url, readCache(t, dir).Server)
				return
			}
			require.Equal(t, 1, code, errOut)
			require.Contains(t, errOut, "the issuer's ID token does not answer this sign-in (its nonce is missing or differs): refused")
		})
	}
}

// The error the issuer redirects back with is shown without its escape sequences.
func TestLoginBrowserErrorIsEscaped(t *testing.T) {
	signInEnv(t)
	h := newHostileIssuer(t)
	code, errOut := browserCallback(t, h, url.Values{"error": {"\x1b[2Jaccess_denied"}, "error_description": {"\u009b6n no"}},
		func(string) map[string]any { return nil })
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `sign-in failed: \x1b[2Jaccess_denied: \u009b6n no`)
	require.False(t, strings.ContainsAny(errOut, "\x1b\u009b"), "%q", errOut)
}
