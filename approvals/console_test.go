package approvals_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/identity"
)

// A decision made through the API with a browser session is recorded as made in the
// console, whatever the body says of itself; without the session's CSRF token it is
// refused.
func TestDecisionWithABrowserSessionIsViaConsole(t *testing.T) {
	b := bustest.Connect(t)
	ctx := context.Background()
	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test_web_sessions"})
	require.NoError(t, err)
	web := identity.NewWebSessions(kv, kv, time.Hour, 8*time.Hour, "http://127.0.0.1:1")
	v := identity.NewVerifier(ctx, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	v.UseWebSessions(web)

	s := &approvals.Service{JS: b.JS, NC: b.NC, Verifier: v, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	require.NoError(t, s.Start(sctx))
	go func() { _ = s.Run(sctx) }()
	e := echo.New()
	s.Register(e)

	// approver-1 signs in to the console.
	rec := httptest.NewRecorder()
	ws, err := web.Create(ctx, e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), rec), approver1, "oidc", time.Time{})
	require.NoError(t, err)
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)

	for _, body := range []string{"", `{"via":"cli"}`} {
		id := request(t, b, 1, "hold")
		require.Eventually(t, func() bool { _, ok := s.Get(id); return ok }, 5*time.Second, 10*time.Millisecond)
		req := httptest.NewRequest(http.MethodPost, "/api/v1/approvals/"+id+"/approve", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(identity.CSRFHeader, ws.CSRF)
		req.AddCookie(cookies[0])
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		a, ok := s.Get(id)
		require.True(t, ok)
		require.Equal(t, approvals.Approved, a.Status)
		require.Len(t, a.Approvals, 1)
		require.Equal(t, "approver-1", a.Approvals[0].By)
		require.Equal(t, "console", a.Approvals[0].Via, "body %q", body)
	}

	// Without the CSRF token, a browser session decides nothing.
	id := request(t, b, 1, "hold")
	require.Eventually(t, func() bool { _, ok := s.Get(id); return ok }, 5*time.Second, 10*time.Millisecond)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/approvals/"+id+"/approve", nil)
	req.AddCookie(cookies[0])
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusForbidden, rec.Code)
	a, _ := s.Get(id)
	require.Equal(t, approvals.Pending, a.Status)
}
