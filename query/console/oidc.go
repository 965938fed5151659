package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/services/identity"
)

// OIDCOptions are the console's OIDC client: the authorization code flow with PKCE (S256),
// a state bound to the browser's pending sign-in and a nonce bound to the ID token.
type OIDCOptions struct {
	// Issuer must be one of the verifier's trusted issuers.
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// HTTPClient reaches the issuer (default http.DefaultClient).
	HTTPClient *http.Client
}

// pendingLifetime bounds how long a sign-in may take between leaving for the identity
// provider and coming back.
const pendingLifetime = 10 * time.Minute

type oidcLogin struct {
	c        *Console
	opts     OIDCOptions
	redirect string

	mu       sync.Mutex
	provider *oidc.Provider
	// lastTry and lastErr: a provider that is down is asked at most once a second, not
	// once per request of anyone who opens the sign-in link.
	lastTry time.Time
	lastErr error
}

// pendingOIDC is kept under the state until the callback takes it, once.
type pendingOIDC struct {
	signIn
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
}

func newOIDCLogin(c *Console, publicURL string, o OIDCOptions) *oidcLogin {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	return &oidcLogin{c: c, opts: o, redirect: publicURL + "/auth/oidc/callback"}
}

func (l *oidcLogin) config(ctx context.Context) (*oauth2.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.provider == nil {
		if l.lastErr != nil && time.Since(l.lastTry) < time.Second {
			return nil, l.lastErr
		}
		l.lastTry = time.Now()
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.opts.HTTPClient), l.opts.Issuer)
		if err != nil {
			l.lastErr = err
			return nil, err
		}
		l.provider, l.lastErr = p, nil
	}
	ep := l.provider.Endpoint()
	// Say how the client authenticates: left to detection, the library tries one way and
	// then the other, and the second try of a code the first spent is refused as a replay.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if l.opts.ClientSecret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client: client_id in the form, PKCE
	}
	return &oauth2.Config{ClientID: l.opts.ClientID, ClientSecret: l.opts.ClientSecret, Endpoint: ep,
		RedirectURL: l.redirect, Scopes: l.opts.Scopes}, nil
}

// start sends the browser to the identity provider.
func (l *oidcLogin) start(ctx echo.Context) error {
	r := ctx.Request()
	cctx, cancel := shortContext(r.Context())
	defer cancel()
	cfg, err := l.config(cctx)
	if err != nil {
		l.c.opts.Log.Warn("oidc discovery failed", "issuer", l.opts.Issuer, "err", err)
		return l.c.errorPage(ctx, http.StatusBadGateway, "The identity provider cannot be reached",
			fmt.Sprintf("Discovery of %s failed; try again in a moment.", l.opts.Issuer))
	}
	state, p := identity.RandomToken(24), &pendingOIDC{Nonce: identity.RandomToken(24), Verifier: oauth2.GenerateVerifier()}
	if err := l.c.startSignIn(ctx, "oidc", state, http.SameSiteLaxMode, p); err != nil {
		return l.c.unavailable(ctx, "Sign-in failed", err)
	}
	return ctx.Redirect(http.StatusSeeOther, cfg.AuthCodeURL(state, oidc.Nonce(p.Nonce), oauth2.S256ChallengeOption(p.Verifier)))
}

// callback takes the identity provider's answer: the state must name a pending sign-in
// of this console (once), the code is exchanged with the PKCE verifier, and the ID token
// must verify with the nonce sent.
func (l *oidcLogin) callback(ctx echo.Context) error {
	r := ctx.Request()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		return l.c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused", "The answer from the identity provider has no valid state.")
	}
	var p pendingOIDC
	if ok, done := l.c.takeSignIn(ctx, "oidc", state, &p,
		"This sign-in answer does not belong to a sign-in started here, or was already used (wrong or replayed state). Start again."); !ok {
		return done
	}
	if e := q.Get("error"); e != "" {
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in failed",
			fmt.Sprintf("The identity provider answered %s: %s", truncate(e, 100), truncate(q.Get("error_description"), 300)))
	}
	code := q.Get("code")
	if code == "" {
		return l.c.errorPage(ctx, http.StatusBadRequest, "Sign-in refused", "The answer from the identity provider has no code.")
	}
	cctx, cancel := shortContext(r.Context())
	defer cancel()
	cfg, err := l.config(cctx)
	if err != nil {
		return l.c.errorPage(ctx, http.StatusBadGateway, "The identity provider cannot be reached", err.Error())
	}
	tok, err := cfg.Exchange(oidc.ClientContext(cctx, l.opts.HTTPClient), code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		l.c.opts.Log.Warn("oidc code exchange failed", "issuer", l.opts.Issuer, "err", err)
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in failed", "The identity provider did not accept the sign-in code: "+exchangeError(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in failed", "The identity provider returned no ID token (is openid among the scopes?).")
	}
	id, err := l.c.opts.Verifier.VerifyIDToken(cctx, raw, l.opts.ClientID, p.Nonce)
	if err != nil {
		l.c.opts.Log.Warn("console sign-in refused", "err", err)
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in refused", "The ID token was refused: "+err.Error())
	}
	if id.Issuer != l.opts.Issuer && id.Issuer+"/" != l.opts.Issuer && id.Issuer != l.opts.Issuer+"/" {
		return l.c.errorPage(ctx, http.StatusUnauthorized, "Sign-in refused", fmt.Sprintf("The ID token is from %s, not from %s.", id.Issuer, l.opts.Issuer))
	}
	return l.c.startSession(ctx, id, "oidc", id.Expiry, p.Next)
}

func exchangeError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return truncate(re.ErrorCode+": "+re.ErrorDescription, 300)
	}
	return truncate(err.Error(), 300)
}

// truncate cuts what an identity provider said to at most n bytes, on a character
// boundary (a cut inside one would show as U+FFFD on the page).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
