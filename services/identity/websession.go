package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
)

// Browser sessions (the web console): a person signs in with OIDC or SAML once, and the
// browser then holds a random session ID in an HttpOnly, SameSite=Lax cookie (Secure, with
// the __Host- prefix, unless the console is served over plain HTTP on a loopback address).
// The session itself is server-side, in a store every process shares (the NATS KV bucket
// gh_web_sessions), under the SHA-256 of the ID: what the store holds cannot be replayed as
// a cookie, a logout in one process ends the session in all, and an altered cookie names no
// session. Every state change made with a session needs its CSRF token in the
// X-CSRF-Token header (or the csrf form field), compared in constant time.

// Cookie names: a Secure cookie takes the __Host- prefix, which the browser only accepts
// from a secure origin, for path / and without a domain.
const (
	SessionCookie       = "__Host-gh_session"
	SessionCookieNotTLS = "gh_session"
	// CSRFHeader carries the session's CSRF token on every state change.
	CSRFHeader = "X-CSRF-Token"
	// CSRFField is the form field that carries it on a plain HTML form.
	CSRFField = "csrf"
	// PollHeader marks a page's background poll, which does not count as use.
	PollHeader = "X-Gatehouse-Poll"
)

// ErrNoPending: no sign-in under way has that secret (never had, taken, or expired).
var ErrNoPending = errors.New("no such sign-in under way")

// WebSession is a signed-in browser session.
type WebSession struct {
	Identity schemas.Identity `json:"identity"`
	// Method is how the person signed in: oidc or saml.
	Method   string    `json:"method"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	// Expiry is when the identity provider's word runs out (the ID token's or the SAML
	// session's), when it said; the session ends then or at its absolute timeout, whichever
	// is first.
	Expiry time.Time `json:"expiry,omitzero"`
}

// KV is the part of a key-value store web sessions need (a jetstream.KeyValue).
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

// WebSessions creates, finds and ends browser sessions.
type WebSessions struct {
	kv KV
	// pending holds the short-lived records of sign-ins under way and of SAML assertions
	// used: apart from the sessions, with its own short TTL and size bound, since anyone
	// may start a sign-in.
	pending KV
	// Idle ends a session unused this long; Absolute ends it this long after sign-in.
	Idle, Absolute time.Duration
	// Secure marks the cookie Secure with the __Host- prefix. Off only where the console is
	// served over plain HTTP on a loopback address (gatehouse dev).
	Secure bool
	// Origin is the console's public origin (https://gatehouse.example.com): a state
	// change from it is this server's own even when a proxy in front changed the Host.
	Origin string
	now    func() time.Time
}

// touchEvery bounds how often a session's last use is written back: idle timeouts are
// kept to within this.
const touchEvery = time.Minute

// NewWebSessions keeps sessions in kv, and sign-ins under way in pending, for the console
// at publicURL (its origin: scheme://host[:port]; https makes the cookies Secure).
func NewWebSessions(kv, pending KV, idle, absolute time.Duration, publicURL string) *WebSessions {
	origin := strings.TrimRight(publicURL, "/")
	return &WebSessions{kv: kv, pending: pending, Idle: idle, Absolute: absolute, Secure: strings.HasPrefix(origin, "https://"), Origin: origin, now: time.Now}
}

// SetClock replaces the clock (tests).
func (w *WebSessions) SetClock(now func() time.Time) { w.now = now }

// CookieName is the session cookie's name.
func (w *WebSessions) CookieName() string {
	if w.Secure {
		return SessionCookie
	}
	return SessionCookieNotTLS
}

// RandomToken is n random bytes, base64url: session IDs, CSRF tokens, states, nonces.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// storeKey is where a secret's record is kept: a prefix and the SHA-256 of the secret.
func storeKey(prefix, secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return prefix + "." + hex.EncodeToString(sum[:])
}

// Create starts a session for id and sets its cookie on c.
func (w *WebSessions) Create(ctx context.Context, c echo.Context, id schemas.Identity, method string, expiry time.Time) (*WebSession, error) {
	now := w.now()
	s := &WebSession{Identity: id, Method: method, CSRF: RandomToken(32), Created: now, LastSeen: now}
	if !expiry.IsZero() && expiry.Before(now.Add(w.Absolute)) {
		s.Expiry = expiry
	}
	// A sign-in in a browser that still holds a session ends that one: a copy of the old
	// cookie must not outlive it.
	if old, ok := w.sessionID(c.Request()); ok {
		_ = w.kv.Delete(ctx, storeKey("s", old))
	}
	sid := RandomToken(32)
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if _, err := w.kv.Create(ctx, storeKey("s", sid), b); err != nil {
		return nil, fmt.Errorf("store the session: %w", err)
	}
	c.SetCookie(w.cookie(sid, int(w.Absolute.Seconds())))
	return s, nil
}

func (w *WebSessions) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: w.CookieName(), Value: value, Path: "/", MaxAge: maxAge, Secure: w.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// sessionID is the request's session cookie, if it has one.
func (w *WebSessions) sessionID(r *http.Request) (string, bool) {
	ck, err := r.Cookie(w.CookieName())
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return "", false
	}
	return ck.Value, true
}

// HasCookie reports whether the request carries a session cookie (valid or not).
func (w *WebSessions) HasCookie(r *http.Request) bool {
	_, ok := w.sessionID(r)
	return ok
}

// SessionError says why a cookie names no usable session.
type SessionError struct{ Reason string }

func (e *SessionError) Error() string { return e.Reason }

// Lookup finds the request's session. An expired one is deleted; a live one has its last
// use recorded (at most once a minute).
func (w *WebSessions) Lookup(ctx context.Context, r *http.Request) (*WebSession, error) {
	sid, ok := w.sessionID(r)
	if !ok {
		return nil, &SessionError{"not signed in"}
	}
	key := storeKey("s", sid)
	e, err := w.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, &SessionError{"the session has ended or was never valid: sign in again"}
	}
	if err != nil {
		return nil, fmt.Errorf("read the session: %w", err)
	}
	var s WebSession
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		// Not a session this version can read (a corrupted record, another version's):
		// ended, rather than every page failing until it expires.
		_ = w.kv.Delete(ctx, key)
		return nil, &SessionError{"the session could not be read: sign in again"}
	}
	now := w.now()
	switch {
	case now.Sub(s.Created) >= w.Absolute:
		_ = w.kv.Delete(ctx, key)
		return nil, &SessionError{fmt.Sprintf("the session reached its %s limit: sign in again", w.Absolute)}
	case now.Sub(s.LastSeen) >= w.Idle:
		_ = w.kv.Delete(ctx, key)
		return nil, &SessionError{fmt.Sprintf("the session was idle for more than %s: sign in again", w.Idle)}
	case !s.Expiry.IsZero() && !now.Before(s.Expiry):
		_ = w.kv.Delete(ctx, key)
		return nil, &SessionError{"the identity provider's sign-in has expired: sign in again"}
	}
	// A page's background poll (X-Gatehouse-Poll) is not the person at work: an open tab
	// alone does not keep a session from ending when idle.
	if now.Sub(s.LastSeen) >= touchEvery && r.Header.Get(PollHeader) == "" {
		s.LastSeen = now
		if b, err := json.Marshal(&s); err == nil {
			// Only over the revision read: a sign-out in between (a delete) is not undone.
			_, _ = w.kv.Update(ctx, key, b, e.Revision())
		}
	}
	return &s, nil
}

// End deletes the request's session and clears its cookie.
func (w *WebSessions) End(ctx context.Context, c echo.Context) error {
	c.SetCookie(w.cookie("", -1)) // whatever happens to the record, this browser is signed out
	if sid, ok := w.sessionID(c.Request()); ok {
		if err := w.kv.Delete(ctx, storeKey("s", sid)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("end the session: %w", err)
		}
	}
	return nil
}

// CheckCSRF verifies a state change made with session s: the X-CSRF-Token header (or the
// csrf form field of a form post) equals the session's token, and a browser's Origin, when
// sent, is this server's own: the console's public origin (scheme, host and port, as
// browsers see it behind a proxy), or the host the request names.
func (w *WebSessions) CheckCSRF(r *http.Request, s *WebSession) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("a %s request from another site (Sec-Fetch-Site: %s) is refused", r.Method, site)
	}
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, w.Origin) && !sameOrigin(o, r) {
		return fmt.Errorf("a %s request from origin %s is refused: it is not this server's", r.Method, o)
	}
	tok := r.Header.Get(CSRFHeader)
	if tok == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		tok = r.PostFormValue(CSRFField)
	}
	if tok == "" {
		return fmt.Errorf("missing CSRF token: a state change made with a browser session needs the %s header", CSRFHeader)
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
		return errors.New("the CSRF token does not match this session")
	}
	return nil
}

func sameOrigin(origin string, r *http.Request) bool {
	o, ok := strings.CutPrefix(origin, "https://")
	if !ok {
		if o, ok = strings.CutPrefix(origin, "http://"); !ok {
			return false
		}
	}
	return strings.EqualFold(o, r.Host)
}

// Pending keeps a short-lived record under a secret (an OIDC state, a SAML relay state)
// until Take reads and deletes it, once.
func (w *WebSessions) Pending(ctx context.Context, secret string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.pending.Create(ctx, storeKey("p", secret), b); err != nil {
		return fmt.Errorf("store the pending sign-in: %w", err)
	}
	return nil
}

// Take reads and deletes the record Pending kept under secret; ErrNoPending when there is
// none (unknown, taken, or expired).
func (w *WebSessions) Take(ctx context.Context, secret string, v any) error {
	key := storeKey("p", secret)
	e, err := w.pending.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNoPending
	}
	if err != nil {
		return err
	}
	// Deleting with the revision read makes a second taker fail even when both read first.
	if err := w.pending.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || isWrongRevision(err) {
			return ErrNoPending
		}
		return err
	}
	return json.Unmarshal(e.Value(), v)
}

// Once records that secret (a SAML assertion ID) has been used: false when it was
// already.
func (w *WebSessions) Once(ctx context.Context, secret string) (bool, error) {
	if _, err := w.pending.Create(ctx, storeKey("o", secret), []byte{1}); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
