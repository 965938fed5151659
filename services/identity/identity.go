// Package identity verifies the short-lived OIDC tokens callers present, and serves a
// development-only issuer for local trials.
package identity

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// Checks a token can fail, as reported in errors and auth.failed events.
const (
	CheckFormat    = "token_format"
	CheckIssuer    = "issuer"
	CheckDiscovery = "discovery"
	CheckSignature = "signature"
	CheckAudience  = "audience"
	CheckExpiry    = "expiry"
	CheckClaims    = "claims"
)

// Error says which check a token failed and why, in words fit for the client.
type Error struct {
	Check string
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

// Identity is a verified caller.
type Identity struct {
	schemas.Identity
	Expiry time.Time
	Claims map[string]any
}

// maxTokenBytes bounds what we are willing to parse.
const maxTokenBytes = 16 << 10

// Verifier checks tokens against the configured issuers. Discovery happens lazily on first
// use and is retried, so an IdP that is down at start does not stop the gateway; until it
// answers, tokens from it are refused (fail closed).
type Verifier struct {
	ctx     context.Context
	log     *slog.Logger
	issuers map[string]*issuer
	now     func() time.Time
	web     *WebSessions
	revoked func(schemas.Identity) (string, bool)
}

type issuer struct {
	cfg config.Issuer

	mu        sync.Mutex
	verifier  *oidc.IDTokenVerifier
	lastTry   time.Time
	lastError error
}

// NewVerifier makes a verifier. ctx bounds background key fetches and must live as long as
// the verifier.
func NewVerifier(ctx context.Context, issuers []config.Issuer, log *slog.Logger) *Verifier {
	v := &Verifier{ctx: ctx, log: log, issuers: map[string]*issuer{}, now: time.Now}
	for _, is := range issuers {
		v.issuers[strings.TrimRight(is.Issuer, "/")] = &issuer{cfg: is}
	}
	return v
}

func (is *issuer) get(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	// Do not hammer a dead IdP: one discovery attempt per second at most.
	if time.Since(is.lastTry) < time.Second && is.lastError != nil {
		return nil, is.lastError
	}
	is.lastTry = time.Now()
	p, err := oidc.NewProvider(ctx, is.cfg.Issuer)
	if err != nil {
		is.lastError = err
		return nil, err
	}
	// The audience is checked by Verify against every accepted audience (go-oidc checks
	// one).
	is.verifier = p.Verifier(&oidc.Config{SkipClientIDCheck: true})
	return is.verifier, nil
}

// Verify checks signature, issuer, audience and expiry of raw and returns the identity. A
// failure is an *Error naming the check.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	is, tok, err := v.verifyRaw(ctx, raw, "token", "password is not a token: ")
	if err != nil {
		return nil, err
	}
	if auds := is.cfg.AcceptedAudiences(); !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(auds, a) }) {
		return nil, &Error{CheckAudience, fmt.Sprintf("token audience %s does not include %s, the audience this gateway accepts from %s: ask the issuer for a token for it",
			quoteList(tok.Audience), quoteList(auds), tok.Issuer)}
	}
	return fromToken(is, tok)
}

// VerifyIDToken checks an ID token a sign-in returned (the web console's OIDC sign-in):
// signature, issuer (one of the trusted issuers), expiry, an audience of clientID, and
// the nonce the sign-in sent. Groups and name are read as for access tokens.
func (v *Verifier) VerifyIDToken(ctx context.Context, raw, clientID, nonce string) (*Identity, error) {
	is, tok, err := v.verifyRaw(ctx, raw, "ID token", "ID token: ")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(tok.Audience, clientID) {
		return nil, &Error{CheckAudience, fmt.Sprintf("ID token audience %s does not include the console's client ID %q", quoteList(tok.Audience), clientID)}
	}
	// OIDC Core 3.1.3.7: with several audiences, or an azp at all, the authorized party must
	// be this client (a token issued to another client that also names this one is not ours).
	var azp struct {
		AZP string `json:"azp"`
	}
	_ = tok.Claims(&azp)
	if (len(tok.Audience) > 1 || azp.AZP != "") && azp.AZP != clientID {
		return nil, &Error{CheckAudience, fmt.Sprintf("ID token was issued to %q (azp), not to the console's client ID %q", azp.AZP, clientID)}
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(nonce)) != 1 {
		return nil, &Error{CheckClaims, "ID token nonce does not match the sign-in's (a replayed or foreign token)"}
	}
	return fromToken(is, tok)
}

// verifyRaw checks what every token must pass — its size, a trusted issuer, the issuer's
// signature, expiry — and returns the issuer and the verified token. what names the token
// in messages ("token", "ID token"); formatPrefix starts the message of one that is not a
// JWT at all.
func (v *Verifier) verifyRaw(ctx context.Context, raw, what, formatPrefix string) (*issuer, *oidc.IDToken, error) {
	if len(raw) > maxTokenBytes {
		return nil, nil, &Error{CheckFormat, fmt.Sprintf("%s is %d bytes, more than the %d allowed", what, len(raw), maxTokenBytes)}
	}
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return nil, nil, &Error{CheckFormat, formatPrefix + err.Error()}
	}
	is, ok := v.issuers[strings.TrimRight(iss, "/")]
	if !ok {
		return nil, nil, &Error{CheckIssuer, fmt.Sprintf("%s issuer %q is not trusted by this gateway", what, iss)}
	}
	ver, err := is.get(v.ctx)
	if err != nil {
		v.log.Warn("oidc discovery failed", "issuer", iss, "err", err)
		return nil, nil, &Error{CheckDiscovery, fmt.Sprintf("cannot reach %s issuer %q to verify the %s; try again later", what, iss, what)}
	}
	tok, err := ver.Verify(ctx, raw)
	if err != nil {
		return nil, nil, classify(err)
	}
	return is, tok, nil
}

// fromToken reads the identity from a verified token's claims.
func fromToken(is *issuer, tok *oidc.IDToken) (*Identity, error) {
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, &Error{CheckClaims, "token claims are not a JSON object"}
	}
	id := &Identity{Expiry: tok.Expiry, Claims: claims}
	id.Subject = tok.Subject
	id.Issuer = tok.Issuer
	if id.Subject == "" {
		return nil, &Error{CheckClaims, "token has no subject (sub)"}
	}
	id.Groups = stringList(claims[is.cfg.GroupsClaim])
	id.Kind = kind(claims, is.cfg.KindClaim)
	id.Name = displayName(claims, &is.cfg, id.Kind, id.Subject)
	if act, ok := claims["act"].(map[string]any); ok {
		if s, ok := act["sub"].(string); ok {
			id.OnBehalfOf = s
		}
	}
	return id, nil
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func classify(err error) *Error {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return &Error{CheckExpiry, fmt.Sprintf("token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))}
	case strings.Contains(msg, "signature"):
		return &Error{CheckSignature, "token signature does not verify against the issuer's published keys"}
	case strings.Contains(msg, "issued by a different provider"):
		return &Error{CheckIssuer, "token issuer does not match the issuer's discovery document"}
	case strings.Contains(msg, "malformed"):
		return &Error{CheckFormat, "token is malformed"}
	case strings.Contains(msg, "before the nbf"):
		return &Error{CheckExpiry, "token is not valid yet (nbf is in the future)"}
	default:
		return &Error{CheckSignature, "token verification failed: " + msg}
	}
}

// unverifiedIssuer reads iss from a JWT without verifying it, only to pick the issuer whose
// keys will verify it.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("a JWT has 3 dot-separated parts, this has %d", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("JWT payload is not base64url")
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", errors.New("JWT payload is not JSON")
	}
	if c.Iss == "" {
		return "", errors.New("JWT has no issuer (iss)")
	}
	return c.Iss, nil
}

func stringList(v any) []string {
	switch t := v.(type) {
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		return strings.Fields(strings.ReplaceAll(t, ",", " "))
	}
	return nil
}

// maxNameBytes bounds a name taken from a claim.
const maxNameBytes = 256

// displayName is the caller's readable name: the first of the issuer's name claims (or the
// defaults) that holds a usable string, else the subject. A claim value that could not be
// shown as it is (control or invisible characters, not UTF-8, longer than maxNameBytes) is
// passed over rather than rewritten, so that identity.name is always a claim's exact value.
func displayName(claims map[string]any, cfg *config.Issuer, kind, sub string) string {
	names := cfg.NameClaim.Names
	if len(names) == 0 {
		names = config.DefaultNameClaims
		if kind == "service" {
			names = append(slices.Clone(names), config.DefaultServiceNameClaims...)
		}
	}
	for _, c := range names {
		if s, ok := claims[c].(string); ok && usableName(s) {
			return s
		}
	}
	return sub
}

// UsableName reports whether s can be shown as a name as it is: UTF-8, no control or
// invisible characters, not blank, at most 256 bytes (names from SAML attributes are held
// to what names from token claims are).
func UsableName(s string) bool { return usableName(s) }

func usableName(s string) bool {
	if strings.TrimSpace(s) == "" || len(s) > maxNameBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

func kind(claims map[string]any, claim string) string {
	for _, c := range []string{claim, "gh_kind"} {
		// agent: an AI agent (the MCP server's callers); its person, if any, is act.sub.
		if s, ok := claims[c].(string); ok && (s == "service" || s == "human" || s == "agent") {
			return s
		}
	}
	if _, ok := claims["email"]; ok {
		return "human"
	}
	return "service"
}

// HasAnyGroup reports whether id is in one of groups.
func (id *Identity) HasAnyGroup(groups []string) bool {
	for _, g := range id.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}
