package identity

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// ContextKey is where Middleware leaves the verified *Identity in the echo context.
const ContextKey = "identity"

// Middleware verifies the request's bearer token and, when groups is not empty, requires
// one of them (role names the groups in the refusal, e.g. "admin" or "auditor"). The
// verified identity is left under ContextKey.
func (v *Verifier) Middleware(groups []string, role string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			if !ok || tok == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
			}
			id, err := v.Verify(c.Request().Context(), tok)
			if err != nil {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "token rejected: "+err.Error())
			}
			if len(groups) > 0 && !id.HasAnyGroup(groups) {
				return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("%s is not in an %s group (%s)", id.Name, role, strings.Join(groups, ", ")))
			}
			c.Set(ContextKey, id)
			return next(c)
		}
	}
}

// FromContext returns the identity Middleware verified.
func FromContext(c echo.Context) *Identity {
	id, _ := c.Get(ContextKey).(*Identity)
	return id
}
