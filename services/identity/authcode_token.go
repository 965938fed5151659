package identity

// The token endpoint's authorization_code and refresh_token grants, and the token answer
// every sign-in gets (the device flow's too): an access token for the gateway, an ID token
// for the client, and a refresh token kept here, replaced at each use.

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/labstack/echo/v4"
)

// errFull is returned when the refresh tokens are at their bound.
var errFull = errors.New("too many refresh tokens are live; try again when some have expired")

// idToken signs an OpenID Connect ID token for who, for the client clientID.
func (d *DevIssuer) idToken(clientID, nonce string, who person, now time.Time) (string, error) {
	claims := map[string]any{
		"iss":                d.issuer,
		"sub":                who.Subject,
		"aud":                clientID,
		"iat":                now.Unix(),
		"auth_time":          now.Unix(),
		"exp":                now.Add(who.TTL).Unix(),
		"name":               who.name(),
		"preferred_username": who.name(),
		"groups":             who.Groups,
		"jti":                randomString(12),
	}
	if strings.Contains(who.name(), "@") {
		claims["email"] = who.name()
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	return jwt.Signed(d.signer).Claims(claims).Serialize()
}

// tokenResponse mints the tokens of a sign-in of who by clientID and keeps a new refresh
// token for them.
func (d *DevIssuer) tokenResponse(clientID, scope, nonce string, who person) (map[string]any, error) {
	if who.TTL <= 0 {
		who.TTL = time.Hour
	}
	s := &d.auth
	now := s.now()
	// jti tells tokens of one second apart: a renewed token is never the one it replaces.
	extra := map[string]any{"jti": randomString(12)}
	if strings.Contains(who.name(), "@") {
		extra["email"] = who.name()
	}
	access, err := d.MintAt(TokenRequest{Subject: who.Subject, Name: who.name(), Groups: who.Groups, TTL: who.TTL, Kind: "human", Extra: extra}, now)
	if err != nil {
		return nil, err
	}
	id, err := d.idToken(clientID, nonce, who, now)
	if err != nil {
		return nil, err
	}
	refresh := randomString(32)
	s.mu.Lock()
	if len(s.refresh) >= maxRefresh {
		s.sweep(now)
	}
	if len(s.refresh) >= maxRefresh {
		s.mu.Unlock()
		return nil, errFull
	}
	s.refresh[refresh] = &refreshGrant{clientID: clientID, scope: scope, who: who, expires: now.Add(refreshTTL)}
	s.mu.Unlock()
	out := map[string]any{"access_token": access, "id_token": id, "refresh_token": refresh, "token_type": "Bearer",
		"expires_in": int(who.TTL.Seconds())}
	if scope != "" {
		out["scope"] = scope
	}
	return out, nil
}

// answerTokens writes tokenResponse's answer, or the error an OAuth client understands.
func (d *DevIssuer) answerTokens(c echo.Context, clientID, scope, nonce string, who person) (map[string]any, error) {
	out, err := d.tokenResponse(clientID, scope, nonce, who)
	switch {
	case errors.Is(err, errFull):
		return nil, oauthError(c, http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
	case err != nil:
		return nil, oauthError(c, http.StatusBadRequest, "invalid_request", err.Error())
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return out, c.JSON(http.StatusOK, out)
}

// s256 is the PKCE S256 transform of a verifier (RFC 7636 4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier: 43 to 128 unreserved characters (RFC 7636 4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
			return false
		}
	}
	return true
}

// codeToken answers grant_type=authorization_code (RFC 6749 4.1.3, RFC 7636 4.5). A code
// is spent by its first exchange, whether that succeeds or not.
func (d *DevIssuer) codeToken(c echo.Context) error {
	code := c.FormValue("code")
	if code == "" {
		return oauthError(c, http.StatusBadRequest, "invalid_request", "code is required")
	}
	s := &d.auth
	s.mu.Lock()
	now := s.now()
	ac := s.codes[code]
	if ac == nil || now.After(ac.expires) {
		u, replayed := s.used[code]
		if replayed {
			// A code used twice was stolen or replayed: what it gave stops working too.
			delete(s.refresh, u.refresh)
		}
		delete(s.codes, code)
		s.mu.Unlock()
		if replayed {
			d.log.Warn("authorization code replayed; its refresh token is revoked")
			return oauthError(c, http.StatusBadRequest, "invalid_grant", "the code was already used: a code gives tokens once")
		}
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "unknown or expired code (a code lives 60 seconds)")
	}
	delete(s.codes, code)
	if len(s.used) >= maxCodes {
		s.sweep(now)
	}
	// When full, the replay of this code is refused all the same, as unknown.
	if len(s.used) < maxCodes {
		s.used[code] = usedCode{expires: ac.expires}
	}
	s.mu.Unlock()
	verifier := c.FormValue("code_verifier")
	switch {
	case c.FormValue("client_id") != ac.clientID:
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "the code was issued to another client_id")
	case c.FormValue("redirect_uri") != ac.redirectURI:
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the one of the authorization request")
	case !validVerifier(verifier):
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "code_verifier is missing or not 43 to 128 unreserved characters (RFC 7636)")
	case subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(ac.chall)) != 1:
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
	}
	out, err := d.answerTokens(c, ac.clientID, ac.scope, ac.nonce, ac.who)
	if out != nil {
		s.mu.Lock()
		if _, ok := s.used[code]; ok {
			s.used[code] = usedCode{refresh: out["refresh_token"].(string), expires: ac.expires}
		}
		s.mu.Unlock()
		d.log.Info("authorization code exchanged", "client_id", ac.clientID, "sub", ac.who.Subject)
	}
	return err
}

// refreshToken answers grant_type=refresh_token (RFC 6749 6): fresh tokens for the same
// person, and a new refresh token in place of the one spent.
func (d *DevIssuer) refreshToken(c echo.Context) error {
	rt := c.FormValue("refresh_token")
	s := &d.auth
	s.mu.Lock()
	g := s.refresh[rt]
	if rt == "" || g == nil || s.now().After(g.expires) {
		delete(s.refresh, rt)
		s.mu.Unlock()
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "unknown, used or expired refresh token: sign in again")
	}
	if id := c.FormValue("client_id"); id != "" && id != g.clientID {
		s.mu.Unlock()
		return oauthError(c, http.StatusBadRequest, "invalid_grant", "the refresh token was issued to another client_id")
	}
	delete(s.refresh, rt) // rotation: the old token stops working now
	s.mu.Unlock()
	out, err := d.answerTokens(c, g.clientID, g.scope, "", g.who)
	if out != nil {
		d.log.Info("tokens refreshed", "client_id", g.clientID, "sub", g.who.Subject)
	}
	return err
}
