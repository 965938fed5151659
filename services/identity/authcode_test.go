package identity

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// codeIssuer serves a development issuer whose authorization code flow runs on a clock
// the test moves, and a loopback client's redirect URI.
type codeIssuer struct {
	d        *DevIssuer
	iss      string
	redirect string
	mu       sync.Mutex
	now      time.Time
	// browser does not follow redirects: the test reads where the issuer sends it.
	browser *http.Client
}

func newCodeIssuer(t *testing.T) *codeIssuer {
	t.Helper()
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	d, err := NewDevIssuer(srv.URL+DevIssuerPath, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	d.Register(e)
	ci := &codeIssuer{d: d, iss: d.Issuer(), redirect: "http://127.0.0.1:43123/callback", now: time.Now(),
		browser: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	d.auth.now = func() time.Time {
		ci.mu.Lock()
		defer ci.mu.Unlock()
		return ci.now
	}
	return ci
}

func (ci *codeIssuer) advance(d time.Duration) {
	ci.mu.Lock()
	ci.now = ci.now.Add(d)
	ci.mu.Unlock()
}

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B

func (ci *codeIssuer) authorizeURL(mod func(url.Values)) string {
	q := url.Values{"response_type": {"code"}, "client_id": {"gatehouse-cli"}, "redirect_uri": {ci.redirect}, "scope": {"openid profile"},
		"state": {"st-1"}, "nonce": {"n-0S6_WzA2Mj"}, "code_challenge": {s256(testVerifier)}, "code_challenge_method": {"S256"}}
	if mod != nil {
		mod(q)
	}
	return ci.iss + "/authorize?" + q.Encode()
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// page GETs u and returns the status, the body and the response.
func (ci *codeIssuer) page(t *testing.T, u string) (int, string, *http.Response) {
	t.Helper()
	resp, err := ci.browser.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp
}

// signIn opens the sign-in page and submits form (with the page's request id), and
// returns where the issuer redirected the browser.
func (ci *codeIssuer) signIn(t *testing.T, authURL string, form url.Values) *url.URL {
	t.Helper()
	code, body, _ := ci.page(t, authURL)
	require.Equal(t, http.StatusOK, code, body)
	m := requestField.FindStringSubmatch(body)
	require.NotNil(t, m, body)
	form.Set("request", m[1])
	resp, err := ci.browser.PostForm(ci.iss+"/authorize", form)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	return loc
}

func (ci *codeIssuer) exchange(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	base := url.Values{"grant_type": {"authorization_code"}, "client_id": {"gatehouse-cli"}, "redirect_uri": {ci.redirect}, "code_verifier": {testVerifier}}
	for k, v := range form {
		base[k] = v
	}
	return postForm(t, ci.iss+"/token", base)
}

func TestAuthorizationCodeFlow(t *testing.T) {
	ci := newCodeIssuer(t)
	resp, err := http.Get(ci.iss + "/.well-known/openid-configuration")
	require.NoError(t, err)
	var disc map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&disc))
	resp.Body.Close()
	require.Equal(t, ci.iss+"/authorize", disc["authorization_endpoint"])
	require.Equal(t, []any{"code"}, disc["response_types_supported"])
	require.Equal(t, []any{"S256"}, disc["code_challenge_methods_supported"])
	require.Subset(t, disc["grant_types_supported"], []any{"authorization_code", "refresh_token", DeviceGrantType})
	require.Contains(t, disc["scopes_supported"], "openid")
	require.Contains(t, disc["claims_supported"], "groups")

	// The page: no script, no inline style, the style sheet from the issuer.
	code, body, r := ci.page(t, ci.authorizeURL(nil))
	require.Equal(t, http.StatusOK, code, body)
	csp := r.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'; style-src 'self'")
	require.Contains(t, csp, "form-action 'self' http://127.0.0.1:43123")
	require.NotContains(t, body, "<script")
	require.NotContains(t, body, "<style")
	require.NotContains(t, body, "style=")
	require.Contains(t, body, `href="/dev/oidc/signin.css"`)
	// Enter in a field presses the first button: Sign in, not a demo person.
	require.Less(t, strings.Index(body, `value="signin"`), strings.Index(body, `name="pick"`))
	for _, who := range []string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"} {
		require.Contains(t, body, `value="`+who+`"`)
	}
	css, cssBody, cssResp := ci.page(t, ci.iss+"/signin.css")
	require.Equal(t, http.StatusOK, css)
	require.Contains(t, cssResp.Header.Get("Content-Type"), "text/css")
	require.Contains(t, cssBody, "font-family")

	// carol by the quick pick.
	loc := ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"carol@example.com"}})
	require.Equal(t, "http://127.0.0.1:43123/callback", loc.Scheme+"://"+loc.Host+loc.Path)
	require.Equal(t, "st-1", loc.Query().Get("state"))
	st, tok := ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}})
	require.Equal(t, http.StatusOK, st, tok)
	require.Equal(t, "Bearer", tok["token_type"])
	require.EqualValues(t, 3600, tok["expires_in"])
	require.NotEmpty(t, tok["refresh_token"])

	// The access token is for the gateway, with the groups and the name.
	v := NewVerifier(t.Context(), []config.Issuer{{Issuer: ci.iss, Audience: DevAudience, GroupsClaim: "groups"}}, slog.New(slog.DiscardHandler))
	id, err := v.Verify(t.Context(), tok["access_token"].(string))
	require.NoError(t, err)
	require.Equal(t, "carol@example.com", id.Subject)
	require.Equal(t, "carol@example.com", id.Name)
	require.Equal(t, "human", id.Kind)
	require.Equal(t, []string{"gatehouse-admins", "auditors", "approvers"}, id.Groups)

	// The ID token verifies as go-oidc clients verify it: audience the client, the nonce.
	ctx := oidc.ClientContext(context.Background(), http.DefaultClient)
	p, err := oidc.NewProvider(ctx, ci.iss)
	require.NoError(t, err)
	idt, err := p.Verifier(&oidc.Config{ClientID: "gatehouse-cli"}).Verify(ctx, tok["id_token"].(string))
	require.NoError(t, err)
	require.Equal(t, "n-0S6_WzA2Mj", idt.Nonce)
	var claims struct {
		Name   string   `json:"name"`
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	require.NoError(t, idt.Claims(&claims))
	require.Equal(t, "carol@example.com", claims.Email)
	require.Equal(t, "carol@example.com", claims.Name)
	require.Equal(t, []string{"gatehouse-admins", "auditors", "approvers"}, claims.Groups)
	_, err = p.Verifier(&oidc.Config{ClientID: "another"}).Verify(ctx, tok["id_token"].(string))
	require.Error(t, err)

	// Typed: someone else, with a token lifetime.
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"action": {"signin"}, "sub": {"erin@example.com"}, "groups": {"ops, dba"}, "ttl": {"5m"}})
	st, tok = ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}})
	require.Equal(t, http.StatusOK, st, tok)
	require.EqualValues(t, 300, tok["expires_in"])
	id, err = v.Verify(t.Context(), tok["access_token"].(string))
	require.NoError(t, err)
	require.Equal(t, []string{"ops", "dba"}, id.Groups)

	// Cancel: access_denied, with the state.
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"action": {"cancel"}})
	require.Equal(t, "access_denied", loc.Query().Get("error"))
	require.Equal(t, "st-1", loc.Query().Get("state"))
}

func TestAuthorizationCodeIsSpentOnce(t *testing.T) {
	ci := newCodeIssuer(t)
	// A wrong verifier: invalid_grant, and the code is spent.
	loc := ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	c := loc.Query().Get("code")
	st, out := ci.exchange(t, url.Values{"code": {c}, "code_verifier": {strings.Repeat("x", 43)}})
	require.Equal(t, http.StatusBadRequest, st)
	require.Equal(t, "invalid_grant", out["error"])
	require.Contains(t, out["error_description"], "code_verifier does not match")
	st, out = ci.exchange(t, url.Values{"code": {c}})
	require.Equal(t, "invalid_grant", out["error"], st)

	// Without a verifier.
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	_, out = ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}, "code_verifier": {""}})
	require.Equal(t, "invalid_grant", out["error"])

	// Another redirect_uri, another client: refused.
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	_, out = ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}, "redirect_uri": {"http://127.0.0.1:43124/callback"}})
	require.Equal(t, "invalid_grant", out["error"])
	require.Contains(t, out["error_description"], "redirect_uri differs")
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	_, out = ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}, "client_id": {"other"}})
	require.Equal(t, "invalid_grant", out["error"])

	// Replayed: refused, and the refresh token the code gave is revoked (RFC 6749 10.5).
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	c = loc.Query().Get("code")
	st, tok := ci.exchange(t, url.Values{"code": {c}})
	require.Equal(t, http.StatusOK, st, tok)
	st, out = ci.exchange(t, url.Values{"code": {c}})
	require.Equal(t, http.StatusBadRequest, st)
	require.Equal(t, "invalid_grant", out["error"])
	require.Contains(t, out["error_description"], "already used")
	_, out = postForm(t, ci.iss+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"gatehouse-cli"}})
	require.Equal(t, "invalid_grant", out["error"])

	// Expired after 60 s.
	loc = ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	ci.advance(61 * time.Second)
	_, out = ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}})
	require.Equal(t, "invalid_grant", out["error"])
	require.Contains(t, out["error_description"], "expired")
}

func TestRefreshTokenRotation(t *testing.T) {
	ci := newCodeIssuer(t)
	loc := ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"bob@example.com"}})
	_, tok := ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}})
	first := tok["refresh_token"].(string)
	refresh := func(rt string) (int, map[string]any) {
		return postForm(t, ci.iss+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"gatehouse-cli"}})
	}
	ci.advance(time.Minute)
	st, fresh := refresh(first)
	require.Equal(t, http.StatusOK, st, fresh)
	second := fresh["refresh_token"].(string)
	require.NotEqual(t, first, second)
	require.NotEqual(t, tok["access_token"], fresh["access_token"])
	v := NewVerifier(t.Context(), []config.Issuer{{Issuer: ci.iss, Audience: DevAudience, GroupsClaim: "groups"}}, slog.New(slog.DiscardHandler))
	id, err := v.Verify(t.Context(), fresh["access_token"].(string))
	require.NoError(t, err)
	require.Equal(t, "bob@example.com", id.Subject)
	require.Equal(t, []string{"auditors"}, id.Groups)
	require.NotEmpty(t, fresh["id_token"])

	// The spent one is refused; another client cannot use the new one.
	st, out := refresh(first)
	require.Equal(t, http.StatusBadRequest, st)
	require.Equal(t, "invalid_grant", out["error"])
	_, out = postForm(t, ci.iss+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second}, "client_id": {"other"}})
	require.Equal(t, "invalid_grant", out["error"])
	_, out = refresh("")
	require.Equal(t, "invalid_grant", out["error"])

	// It lives 12 hours.
	ci.advance(refreshTTL + time.Second)
	_, out = refresh(second)
	require.Equal(t, "invalid_grant", out["error"])
}

// Errors go back to the client only where the redirect is one the issuer may use; a bad
// redirect_uri is never followed.
func TestAuthorizeErrors(t *testing.T) {
	ci := newCodeIssuer(t)
	for _, bad := range []string{"https://evil.example/cb", "http://evil.example:8080/cb", "javascript:alert(1)", "/relative",
		"http://127.0.0.1:1/cb#frag", "http://user@127.0.0.1:1/cb", "https://127.0.0.1.evil.example/cb"} {
		code, body, r := ci.page(t, ci.authorizeURL(func(q url.Values) { q.Set("redirect_uri", bad) }))
		require.Equal(t, http.StatusBadRequest, code, bad)
		require.Empty(t, r.Header.Get("Location"), bad)
		require.Contains(t, body, "redirect_uri", bad)
		require.NotContains(t, body, `name="request"`)
	}
	code, _, r := ci.page(t, ci.authorizeURL(func(q url.Values) { q.Del("client_id") }))
	require.Equal(t, http.StatusBadRequest, code)
	require.Empty(t, r.Header.Get("Location"))

	// Allowed: localhost and IPv6 loopback on any port, and the issuer's own host.
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(ci.iss, "http://"))
	for _, ok := range []string{"http://localhost:9/cb", "http://[::1]:9/cb", "http://" + host + ":8080/auth/oidc/callback", "https://" + host + "/auth/oidc/callback"} {
		code, body, _ := ci.page(t, ci.authorizeURL(func(q url.Values) { q.Set("redirect_uri", ok) }))
		require.Equal(t, http.StatusOK, code, ok+": "+body)
	}

	for name, tc := range map[string]struct {
		mod  func(url.Values)
		want string
	}{
		"plain":          {func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		"no challenge":   {func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		"short":          {func(q url.Values) { q.Set("code_challenge", "abc") }, "invalid_request"},
		"implicit token": {func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
	} {
		code, _, r := ci.page(t, ci.authorizeURL(tc.mod))
		require.Equal(t, http.StatusFound, code, name)
		loc, err := url.Parse(r.Header.Get("Location"))
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:43123", loc.Host, name)
		require.Equal(t, tc.want, loc.Query().Get("error"), name)
		require.Equal(t, "st-1", loc.Query().Get("state"), name)
	}

	// A form without a pending request's id (or another origin's) signs no one in.
	resp, err := ci.browser.PostForm(ci.iss+"/authorize", url.Values{"request": {"guess"}, "pick": {"alice@example.com"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Location"))
	_, body, _ := ci.page(t, ci.authorizeURL(nil))
	req, _ := http.NewRequest(http.MethodPost, ci.iss+"/authorize",
		strings.NewReader(url.Values{"request": {requestField.FindStringSubmatch(body)[1]}, "pick": {"alice@example.com"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	resp, err = ci.browser.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestSignInPageEscapes(t *testing.T) {
	ci := newCodeIssuer(t)
	evil := `<script>alert("x")</script>`
	code, body, _ := ci.page(t, ci.authorizeURL(func(q url.Values) {
		q.Set("client_id", evil)
		q.Set("redirect_uri", "http://127.0.0.1:43123/cb?x=\"><b>")
	}))
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, "<script")
	require.NotContains(t, body, `"><b>`)
	require.Contains(t, body, "&lt;script&gt;")
	// A typed subject sent back in an error page is escaped too.
	m := requestField.FindStringSubmatch(body)
	resp, err := ci.browser.PostForm(ci.iss+"/authorize", url.Values{"request": {m[1]}, "action": {"signin"}, "sub": {evil}, "ttl": {"forever"}})
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.NotContains(t, string(b), "<script")
	require.Contains(t, string(b), "forever")
}

// The device flow's answer carries an ID token and a refresh token too.
func TestDeviceFlowGivesRefreshAndIDTokens(t *testing.T) {
	di := newDeviceIssuer(t)
	start := di.start(t)
	tok := approvalPage(t, start["verification_uri_complete"].(string))
	form := url.Values{"user_code": {start["user_code"].(string)}, "form_token": {tok}, "action": {"approve"}, "sub": {"ada"},
		"name": {"ada@example.com"}, "groups": {"ops"}}
	r, err := http.PostForm(di.d.Issuer()+"/device", form)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusOK, r.StatusCode)
	e, out := di.poll(t, start["device_code"].(string))
	require.Empty(t, e, out)
	require.NotEmpty(t, out["refresh_token"])
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, di.d.Issuer())
	require.NoError(t, err)
	idt, err := p.Verifier(&oidc.Config{ClientID: "gatehouse-cli"}).Verify(ctx, out["id_token"].(string))
	require.NoError(t, err)
	require.Equal(t, "ada", idt.Subject)
	_, fresh := postForm(t, di.d.Issuer()+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}})
	require.NotEmpty(t, fresh["access_token"], fresh)
}

// VerifyIDToken (the console's sign-in) takes an ID token only for its client and with the
// nonce its sign-in sent.
func TestVerifyIDTokenChecksAudienceAndNonce(t *testing.T) {
	ci := newCodeIssuer(t)
	loc := ci.signIn(t, ci.authorizeURL(nil), url.Values{"pick": {"alice@example.com"}})
	st, tok := ci.exchange(t, url.Values{"code": {loc.Query().Get("code")}})
	require.Equal(t, http.StatusOK, st, tok)
	idTok := tok["id_token"].(string)
	v := NewVerifier(t.Context(), []config.Issuer{{Issuer: ci.iss, Audience: DevAudience, GroupsClaim: "groups"}}, slog.New(slog.DiscardHandler))

	id, err := v.VerifyIDToken(t.Context(), idTok, "gatehouse-cli", "n-0S6_WzA2Mj")
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", id.Name)
	require.Equal(t, []string{"approvers"}, id.Groups)

	_, err = v.VerifyIDToken(t.Context(), idTok, "gatehouse-cli", "another-nonce")
	require.ErrorContains(t, err, "nonce does not match")
	_, err = v.VerifyIDToken(t.Context(), idTok, "gatehouse-cli", "")
	require.ErrorContains(t, err, "nonce does not match")
	_, err = v.VerifyIDToken(t.Context(), idTok, "gatehouse-console", "n-0S6_WzA2Mj")
	require.ErrorContains(t, err, "audience")
	// An access token is not an ID token for the console: its audience is the gateway's.
	_, err = v.VerifyIDToken(t.Context(), tok["access_token"].(string), "gatehouse-cli", "n-0S6_WzA2Mj")
	require.Error(t, err)
	// Nor does a token from an issuer the gateway does not trust pass.
	other := NewVerifier(t.Context(), nil, slog.New(slog.DiscardHandler))
	_, err = other.VerifyIDToken(t.Context(), idTok, "gatehouse-cli", "n-0S6_WzA2Mj")
	require.ErrorContains(t, err, "not trusted")
}
