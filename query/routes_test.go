package query

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/identity"
)

// An unknown API path is a 404, not an auditor check; the known ones need a token.
func TestUnknownRoutesAreNotFound(t *testing.T) {
	e := echo.New()
	New(nil, "gatehouse", identity.NewVerifier(context.Background(), nil, slog.New(slog.DiscardHandler)), []string{"auditors"}, slog.New(slog.DiscardHandler)).Register(e)
	for path, want := range map[string]int{"/api/v1/nope": http.StatusNotFound, "/api/v1/approvals/x/approve": http.StatusNotFound,
		"/api/v1/sessions": http.StatusUnauthorized, "/api/v1/evidence/access": http.StatusUnauthorized} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, want, rec.Code, path)
	}
}
