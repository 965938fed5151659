// Package console is the web console: the pages approvers and compliance teams use
// (approvals, sessions and their replay, evidence, grants, resources and policies), and
// how people sign in to it (OIDC with PKCE, SAML 2.0) into a browser session. The pages
// are a client of the same API scripts use (/api/v1), with the session cookie and its
// CSRF token instead of a bearer token; their assets are embedded in the binary and load
// nothing from anywhere else.
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/services/identity"
)

//go:embed web
var webFS embed.FS

// Roles are the groups of the API's roles, shown to the pages so that they offer only what
// the person may do (the API checks again).
type Roles struct {
	Auditor []string
	Admin   []string
}

// Options configure the console.
type Options struct {
	// PublicURL is the console's address as browsers see it (no trailing slash).
	PublicURL string
	Sessions  *identity.WebSessions
	Verifier  *identity.Verifier
	Roles     Roles
	// OIDC signs people in with an OIDC provider, when set.
	OIDC *OIDCOptions
	// SAML signs people in with a SAML identity provider, when set.
	SAML *SAMLOptions
	Log  *slog.Logger
}

// Console serves the pages and the sign-in.
type Console struct {
	opts   Options
	oidc   *oidcLogin
	saml   *samlLogin
	assets fs.FS
}

// New makes the console. The OIDC provider is discovered lazily (one that is down at start
// only fails the sign-ins that need it); the SAML IdP's metadata is given, read at start.
func New(opts Options) (*Console, error) {
	if opts.Sessions == nil || opts.Verifier == nil {
		return nil, errors.New("console: sessions and verifier are required")
	}
	assets, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, err
	}
	c := &Console{opts: opts, assets: assets}
	if opts.OIDC != nil {
		c.oidc = newOIDCLogin(c, opts.PublicURL, *opts.OIDC)
	}
	if opts.SAML != nil {
		if c.saml, err = newSAMLLogin(c, opts.PublicURL, *opts.SAML); err != nil {
			return nil, err
		}
	}
	if c.oidc == nil && c.saml == nil {
		return nil, errors.New("console: no way to sign in (neither OIDC nor SAML is configured)")
	}
	return c, nil
}

// Pages are the console's page paths (the single-page app answers each with index.html).
var Pages = []string{"/", "/approvals", "/sessions", "/sessions/:id", "/evidence", "/grants", "/resources"}

// Register mounts the pages, the assets, the sign-in and GET /api/v1/me.
func (c *Console) Register(e *echo.Echo) {
	g := e.Group("", securityHeaders)
	for _, p := range Pages {
		g.GET(p, c.page)
	}
	g.GET("/assets/*", c.asset)
	g.GET("/auth/login", c.loginPage)
	g.POST("/auth/logout", c.logout)
	if c.oidc != nil {
		g.GET("/auth/oidc/login", c.oidc.start)
		g.GET("/auth/oidc/callback", c.oidc.callback)
	}
	if c.saml != nil {
		c.saml.register(g)
	}
	e.GET("/api/v1/me", c.me, c.opts.Verifier.Middleware(nil, ""))
}

// CSP is the console's Content-Security-Policy: its own scripts and styles only, nothing
// inline, no frames, forms only to itself. 'wasm-unsafe-eval' lets the terminal player
// compile its WebAssembly terminal (it allows no JavaScript eval).
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on its
		// own form posts, which the CSRF check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		return next(c)
	}
}

// page answers a page path with the app, or sends a person who is not signed in to the
// sign-in page (and back here afterwards).
func (c *Console) page(ctx echo.Context) error {
	r := ctx.Request()
	if _, err := c.opts.Sessions.Lookup(r.Context(), r); err != nil {
		var se *identity.SessionError
		if !errors.As(err, &se) {
			return c.unavailable(ctx, "The console cannot read sessions right now", err)
		}
		q := "?next=" + urlQueryEscape(r.URL.RequestURI())
		if c.opts.Sessions.HasCookie(r) {
			q += "&ended=1" // an expired or tampered cookie: say so on the sign-in page
		}
		return ctx.Redirect(http.StatusSeeOther, "/auth/login"+q)
	}
	ctx.Response().Header().Set("Cache-Control", "no-store")
	b, err := fs.ReadFile(c.assets, "index.html")
	if err != nil {
		return err
	}
	return ctx.HTMLBlob(http.StatusOK, b)
}

func (c *Console) asset(ctx echo.Context) error {
	name := ctx.Param("*")
	if name == "" || strings.Contains(name, "..") || name == "index.html" {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	f, err := c.assets.Open(name)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	// Revalidated every time (a 304 when unchanged): after an upgrade no browser mixes old
	// and new modules. The ETag is the content's hash.
	sum := sha256.Sum256(b)
	h := ctx.Response().Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	http.ServeContent(ctx.Response(), ctx.Request(), name, time.Time{}, bytes.NewReader(b))
	return nil
}

// Me is GET /api/v1/me: who is signed in, with what roles, and (for a browser session) the
// CSRF token its state changes need.
type Me struct {
	Subject string   `json:"subject"`
	Name    string   `json:"name"`
	Issuer  string   `json:"issuer"`
	Groups  []string `json:"groups"`
	Roles   []string `json:"roles"`
	Method  string   `json:"method,omitempty"`
	CSRF    string   `json:"csrf,omitempty"`
	// Expires is when the browser session ends at the latest.
	Expires *time.Time `json:"expires,omitempty"`
}

func (c *Console) me(ctx echo.Context) error {
	id := identity.FromContext(ctx)
	m := Me{Subject: id.Subject, Name: id.Name, Issuer: id.Issuer, Groups: id.Groups, Roles: []string{}}
	if m.Groups == nil {
		m.Groups = []string{}
	}
	if id.HasAnyGroup(c.opts.Roles.Auditor) {
		m.Roles = append(m.Roles, "auditor")
	}
	if id.HasAnyGroup(c.opts.Roles.Admin) {
		m.Roles = append(m.Roles, "admin")
	}
	if s := identity.WebSessionFromContext(ctx); s != nil {
		m.Method, m.CSRF = s.Method, s.CSRF
		end := s.Created.Add(c.opts.Sessions.Absolute)
		if !s.Expiry.IsZero() && s.Expiry.Before(end) {
			end = s.Expiry
		}
		m.Expires = &end
	}
	ctx.Response().Header().Set("Cache-Control", "no-store")
	return ctx.JSON(http.StatusOK, m)
}

func (c *Console) logout(ctx echo.Context) error {
	r := ctx.Request()
	s, err := c.opts.Sessions.Lookup(r.Context(), r)
	var se *identity.SessionError
	switch {
	case err == nil:
		if err := c.opts.Sessions.CheckCSRF(r, s); err != nil {
			return c.errorPage(ctx, http.StatusForbidden, "Sign-out refused", err.Error())
		}
	case !errors.As(err, &se):
		return c.unavailable(ctx, "Sign-out failed", err) // not unchecked: the store could not say
	}
	if err := c.opts.Sessions.End(r.Context(), ctx); err != nil {
		return c.unavailable(ctx, "Sign-out failed", err)
	}
	if s != nil {
		c.opts.Log.Info("console sign-out", "name", s.Identity.Name, "method", s.Method)
	}
	return ctx.Redirect(http.StatusSeeOther, "/auth/login?signed_out=1")
}

// localPath is next when it is a path on this site, else "/": a sign-in never sends the
// browser elsewhere (an open redirect).
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") || len(next) > 2048 {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if next[i] < 0x20 || next[i] == 0x7f {
			return "/" // a client that drops control characters would read /\x0b/x as //x
		}
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// unavailable is the page for a store that cannot be reached: the cause is logged, the
// person is told to try again (not shown NATS's words).
func (c *Console) unavailable(ctx echo.Context, title string, err error) error {
	c.opts.Log.Error("console: the session store failed", "err", err, "path", ctx.Request().URL.Path)
	return c.errorPage(ctx, http.StatusServiceUnavailable, title, "Gatehouse cannot reach its session store right now; try again in a moment.")
}

// startSession signs id in: a new browser session, and the browser sent on to next.
func (c *Console) startSession(ctx echo.Context, id *identity.Identity, method string, expiry time.Time, next string) error {
	if reason, ok := c.opts.Verifier.Revoked(id.Identity); ok {
		c.opts.Log.Warn("console sign-in of a revoked identity refused", "name", id.Name, "subject", id.Subject, "method", method)
		return c.errorPage(ctx, http.StatusForbidden, "Sign-in refused", "Your access to Gatehouse is revoked: "+reason)
	}
	c.unbindBrowser(ctx, method) // the sign-in is over
	if _, err := c.opts.Sessions.Create(ctx.Request().Context(), ctx, id.Identity, method, expiry); err != nil {
		return c.unavailable(ctx, "Sign-in failed", err)
	}
	c.opts.Log.Info("console sign-in", "name", id.Name, "subject", id.Subject, "issuer", id.Issuer, "groups", id.Groups, "method", method)
	return ctx.Redirect(http.StatusSeeOther, localPath(next))
}

// signinCookie ties a sign-in's answer to the browser that started it.
const signinCookie = "gh_signin"

// signinCookieFor is the sign-in cookie of a flow (oidc, saml): its name and path. Over
// https it is a __Host- cookie (path /, no domain), which no sibling subdomain can plant to
// tie a victim's browser to the planter's own sign-in; over loopback http (gatehouse dev),
// gh_signin under /auth/<flow>/.
func (c *Console) signinCookieFor(flow string) (name, path string) {
	if c.opts.Sessions.Secure {
		return "__Host-" + signinCookie + "-" + flow, "/"
	}
	return signinCookie, "/auth/" + flow + "/"
}

// bindBrowser sets a fresh sign-in cookie for the flow and returns its value, to be kept
// with the pending sign-in.
func (c *Console) bindBrowser(ctx echo.Context, flow string, site http.SameSite) string {
	v := identity.RandomToken(24)
	name, path := c.signinCookieFor(flow)
	ctx.SetCookie(&http.Cookie{Name: name, Value: v, Path: path, MaxAge: int(pendingLifetime.Seconds()),
		Secure: c.opts.Sessions.Secure || site == http.SameSiteNoneMode, HttpOnly: true, SameSite: site})
	return v
}

// sameBrowser reports whether the request carries the flow's sign-in cookie want.
func (c *Console) sameBrowser(ctx echo.Context, flow, want string) bool {
	name, _ := c.signinCookieFor(flow)
	ck, err := ctx.Request().Cookie(name)
	return err == nil && want != "" && subtle.ConstantTimeCompare([]byte(ck.Value), []byte(want)) == 1
}

// unbindBrowser clears the flow's sign-in cookie once the sign-in is over.
func (c *Console) unbindBrowser(ctx echo.Context, flow string) {
	name, path := c.signinCookieFor(flow)
	ctx.SetCookie(&http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, Secure: c.opts.Sessions.Secure, HttpOnly: true})
}

// shortContext bounds a call to an identity provider.
func shortContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 15*time.Second)
}
