package console_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/query/console"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/identity"
)

// newOIDCConsole is a console whose OIDC provider is never reached (discovery is lazy):
// enough for what needs no sign-in.
func newOIDCConsole(t *testing.T) *echo.Echo {
	t.Helper()
	b := bustest.Connect(t)
	kv, err := b.JS.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bus.BucketWebSessions, History: 1, TTL: time.Hour})
	require.NoError(t, err)
	sessions := identity.NewWebSessions(kv, kv, 30*time.Minute, 12*time.Hour, "http://127.0.0.1:1")
	v := identity.NewVerifier(context.Background(), nil, slog.New(slog.DiscardHandler))
	v.UseWebSessions(sessions)
	c, err := console.New(console.Options{PublicURL: "http://127.0.0.1:1", Sessions: sessions, Verifier: v, Log: slog.New(slog.DiscardHandler),
		OIDC: &console.OIDCOptions{Issuer: "http://127.0.0.1:1/nowhere", ClientID: "gatehouse-console", Scopes: []string{"openid"}}})
	require.NoError(t, err)
	e := echo.New()
	c.Register(e)
	return e
}

func serve(e *echo.Echo, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestPagesNeedASignIn(t *testing.T) {
	e := newOIDCConsole(t)
	for _, p := range []string{"/", "/approvals", "/sessions/01abc", "/evidence?since=2026-01-01", "/resources"} {
		rec := serve(e, http.MethodGet, p, nil)
		require.Equal(t, http.StatusSeeOther, rec.Code, p)
		require.Equal(t, "/auth/login?next="+url.QueryEscape(p), rec.Header().Get("Location"))
		require.Equal(t, console.CSP, rec.Header().Get("Content-Security-Policy"))
	}
	// A cookie that names no session: sent to sign in, told why.
	req := httptest.NewRequest(http.MethodGet, "/approvals", nil)
	req.AddCookie(&http.Cookie{Name: identity.SessionCookieNotTLS, Value: "forged"})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Contains(t, rec.Header().Get("Location"), "&ended=1")
	// The API says 401, never a page.
	require.Equal(t, http.StatusUnauthorized, serve(e, http.MethodGet, "/api/v1/me", nil).Code)
}

func TestSecurityHeadersAndAssets(t *testing.T) {
	e := newOIDCConsole(t)
	rec := serve(e, http.MethodGet, "/auth/login", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	h := rec.Header()
	require.Equal(t, console.CSP, h.Get("Content-Security-Policy"))
	require.NotContains(t, console.CSP, "unsafe-inline")
	require.NotContains(t, console.CSP, "'unsafe-eval'")
	require.Equal(t, "DENY", h.Get("X-Frame-Options"))
	require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	require.NotContains(t, rec.Body.String(), "<script")
	require.NotContains(t, rec.Body.String(), "style=")

	rec = serve(e, http.MethodGet, "/assets/console.css", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Header().Get("Content-Type"), "text/css")
	etag := rec.Header().Get("ETag")
	require.NotEmpty(t, etag)
	require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"))
	require.Equal(t, http.StatusNotModified, serve(e, http.MethodGet, "/assets/console.css", map[string]string{"If-None-Match": etag}).Code)
	require.Equal(t, http.StatusOK, serve(e, http.MethodGet, "/assets/js/app.js", nil).Code)

	// Nothing but the assets: not the app shell (it needs a session), not the source.
	for _, p := range []string{"/assets/index.html", "/assets/../console.go", "/assets/%2e%2e/console.go", "/assets/js/../../console.go",
		"/assets/", "/assets/js", "/assets/nope.js", "/assets/..%2fconsole.go"} {
		rec := serve(e, http.MethodGet, p, nil)
		require.Equal(t, http.StatusNotFound, rec.Code, p)
		require.NotContains(t, rec.Body.String(), "package console", p)
	}
}

// next never sends the browser to another site.
func TestSignInNeverRedirectsElsewhere(t *testing.T) {
	e := newOIDCConsole(t)
	for _, next := range []string{"//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "\\\\evil", "/ok\r\nSet-Cookie: x=1",
		"/\x0b/evil.example", "/\x0c/evil.example", "/\x7f/evil.example", "/x\x00y"} {
		rec := serve(e, http.MethodGet, "/auth/login?next="+url.QueryEscape(next), nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), `href="/auth/oidc/login?next=%2f"`, "next %q reached the page", next)
	}
	rec := serve(e, http.MethodGet, "/auth/login?next="+url.QueryEscape("/sessions?resource=demo"), nil)
	require.Contains(t, rec.Body.String(), `next=%2fsessions%3fresource%3ddemo`)
}

// An identity provider that cannot be reached: a clear page, not a hang or a stack trace.
func TestOIDCProviderDown(t *testing.T) {
	e := newOIDCConsole(t)
	rec := serve(e, http.MethodGet, "/auth/oidc/login?next=/", nil)
	require.Equal(t, http.StatusBadGateway, rec.Code)
	require.Contains(t, rec.Body.String(), "The identity provider cannot be reached")
	require.False(t, strings.Contains(rec.Body.String(), "goroutine"))
}
