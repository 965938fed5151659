package app

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// apiServer is an HTTP server with a development issuer, and a verifier that trusts it:
// what the app's API routes are tested on.
func apiServer(t *testing.T) (*echo.Echo, *httptest.Server, *identity.DevIssuer, *identity.Verifier) {
	t.Helper()
	discard := slog.New(slog.DiscardHandler)
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	dev, err := identity.NewDevIssuer(srv.URL+identity.DevIssuerPath, t.TempDir(), discard)
	require.NoError(t, err)
	dev.Register(e)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, discard)
	return e, srv, dev, v
}
