package identity

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
)

// ContextKey is where Middleware leaves the verified *Identity in the echo context.
const ContextKey = "identity"

// webSessionKey is where Middleware leaves the *WebSession a request was made with.
const webSessionKey = "web-session"

// UseWebSessions lets Middleware accept a browser session cookie where a request has no
// bearer token (the web console). Without it, only bearer tokens are accepted.
func (v *Verifier) UseWebSessions(w *WebSessions) { v.web = w }

// UseRevocations makes Middleware refuse identities revoked by an administrator
// (POST /api/v1/revocations, kind identity): revoked says whether id is, and why. A
// browser session of a revoked identity is ended.
func (v *Verifier) UseRevocations(revoked func(id schemas.Identity) (reason string, ok bool)) {
	v.revoked = revoked
}

// Revoked says whether id is revoked, and why (never, without UseRevocations).
func (v *Verifier) Revoked(id schemas.Identity) (string, bool) {
	if v.revoked == nil {
		return "", false
	}
	return v.revoked(id)
}

// WebSessions are the browser sessions Middleware accepts (nil when none).
func (v *Verifier) WebSessions() *WebSessions { return v.web }

// Middleware verifies the request's bearer token — or, without one, its browser session,
// whose state changes need the session's CSRF token — and, when groups is not empty,
// requires one of them (role names the groups in the refusal, e.g. "admin" or "auditor").
// The verified identity is left under ContextKey.
func (v *Verifier) Middleware(groups []string, role string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, err := v.authenticate(c)
			if err != nil {
				return err
			}
			if reason, ok := v.Revoked(id.Identity); ok {
				if v.web != nil && WebSessionFromContext(c) != nil {
					_ = v.web.End(c.Request().Context(), c)
				}
				return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("%s is revoked: %s", id.Name, reason))
			}
			if len(groups) > 0 && !id.HasAnyGroup(groups) {
				return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("%s is not in an %s group (%s)", id.Name, role, strings.Join(groups, ", ")))
			}
			c.Set(ContextKey, id)
			return next(c)
		}
	}
}

func (v *Verifier) authenticate(c echo.Context) (*Identity, error) {
	r := c.Request()
	auth := r.Header.Get("Authorization")
	if auth == "" && v.web != nil && v.web.HasCookie(r) {
		s, err := v.web.Lookup(r.Context(), r)
		var se *SessionError
		switch {
		case errors.As(err, &se):
			return nil, echo.NewHTTPError(http.StatusUnauthorized, se.Reason)
		case err != nil:
			return nil, echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
		}
		if err := v.web.CheckCSRF(r, s); err != nil {
			return nil, echo.NewHTTPError(http.StatusForbidden, err.Error())
		}
		c.Set(webSessionKey, s)
		return &Identity{Identity: s.Identity, Expiry: s.Expiry}, nil
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		return nil, echo.NewHTTPError(http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
	}
	id, err := v.Verify(r.Context(), tok)
	if err != nil {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token"`)
		return nil, echo.NewHTTPError(http.StatusUnauthorized, "token rejected: "+err.Error())
	}
	return id, nil
}

// FromContext returns the identity Middleware verified.
func FromContext(c echo.Context) *Identity {
	id, _ := c.Get(ContextKey).(*Identity)
	return id
}

// WebSessionFromContext returns the browser session a request was made with (nil for a
// bearer token).
func WebSessionFromContext(c echo.Context) *WebSession {
	s, _ := c.Get(webSessionKey).(*WebSession)
	return s
}
