package identity

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// webSessionEnv is an API behind Middleware with browser sessions kept in a real NATS KV,
// and a clock the test moves.
type webSessionEnv struct {
	ws     *WebSessions
	e      *echo.Echo
	mu     sync.Mutex
	now    time.Time
	kv     jetstream.KeyValue
	signIn func(t *testing.T) *http.Cookie
}

func newWebSessionEnv(t *testing.T) *webSessionEnv {
	b := bustest.Connect(t)
	ctx := context.Background()
	kv, err := b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketWebSessions, History: 1, TTL: 13 * time.Hour})
	require.NoError(t, err)
	env := &webSessionEnv{kv: kv, now: time.Now()}
	env.ws = NewWebSessions(kv, kv, 30*time.Minute, 12*time.Hour, "http://127.0.0.1:1")
	env.ws.SetClock(func() time.Time { env.mu.Lock(); defer env.mu.Unlock(); return env.now })
	v := NewVerifier(ctx, nil, slog.New(slog.DiscardHandler))
	v.UseWebSessions(env.ws)
	e := echo.New()
	e.POST("/signin", func(c echo.Context) error {
		_, err := env.ws.Create(c.Request().Context(), c, schemas.Identity{Subject: "u-1", Name: "alice@example.com", Issuer: "https://idp", Groups: []string{"approvers"}, Kind: "human"}, "oidc", time.Time{})
		return err
	})
	e.GET("/api/who", func(c echo.Context) error { return c.String(http.StatusOK, FromContext(c).Name) }, v.Middleware(nil, ""))
	e.POST("/api/change", func(c echo.Context) error { return c.String(http.StatusOK, "changed") }, v.Middleware(nil, ""))
	e.GET("/api/admin", func(c echo.Context) error { return c.String(http.StatusOK, "admin") }, v.Middleware([]string{"admins"}, "admin"))
	e.POST("/signout", func(c echo.Context) error { return env.ws.End(c.Request().Context(), c) })
	env.e = e
	env.signIn = func(t *testing.T) *http.Cookie {
		rec := env.do(nil, http.MethodPost, "/signin", nil)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		cks := rec.Result().Cookies()
		require.Len(t, cks, 1)
		ck := cks[0]
		require.Equal(t, SessionCookieNotTLS, ck.Name)
		require.True(t, ck.HttpOnly, "the session cookie is readable by scripts")
		require.Equal(t, http.SameSiteLaxMode, ck.SameSite)
		require.Equal(t, "/", ck.Path)
		return ck
	}
	return env
}

func (env *webSessionEnv) advance(d time.Duration) {
	env.mu.Lock()
	env.now = env.now.Add(d)
	env.mu.Unlock()
}

func (env *webSessionEnv) do(ck *http.Cookie, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if ck != nil {
		req.AddCookie(ck)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

// csrf reads the session's CSRF token from the store, as GET /api/v1/me hands it out.
func (env *webSessionEnv) csrf(t *testing.T, ck *http.Cookie) string {
	e, err := env.kv.Get(context.Background(), storeKey("s", ck.Value))
	require.NoError(t, err)
	var s WebSession
	require.NoError(t, json.Unmarshal(e.Value(), &s))
	return s.CSRF
}

func TestWebSessionSignsInAndStoresNoUsableCookie(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	rec := env.do(ck, http.MethodGet, "/api/who", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "alice@example.com", rec.Body.String())

	// The store holds the session under the hash of the cookie: its keys are not cookies.
	keys, err := env.kv.Keys(context.Background())
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NotContains(t, keys[0], ck.Value)
	forged := &http.Cookie{Name: ck.Name, Value: strings.TrimPrefix(keys[0], "s.")}
	require.Equal(t, http.StatusUnauthorized, env.do(forged, http.MethodGet, "/api/who", nil).Code, "the store's key works as a cookie")

	// Groups still apply to a browser session.
	require.Equal(t, http.StatusForbidden, env.do(ck, http.MethodGet, "/api/admin", nil).Code)
}

func TestWebSessionTamperedCookieRefused(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	b := []byte(ck.Value)
	b[3] ^= 1
	rec := env.do(&http.Cookie{Name: ck.Name, Value: string(b)}, http.MethodGet, "/api/who", nil)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Body.String(), "sign in again")
	require.Equal(t, http.StatusUnauthorized, env.do(&http.Cookie{Name: ck.Name, Value: strings.Repeat("A", 500)}, http.MethodGet, "/api/who", nil).Code)
}

func TestWebSessionCSRF(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	tok := env.csrf(t, ck)

	rec := env.do(ck, http.MethodPost, "/api/change", nil)
	require.Equal(t, http.StatusForbidden, rec.Code, "a state change without a CSRF token was accepted")
	require.Contains(t, rec.Body.String(), "missing CSRF token")
	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: tok[:len(tok)-1] + "x"})
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Contains(t, rec.Body.String(), "does not match")
	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: tok, "Origin": "https://evil.example"})
	require.Equal(t, http.StatusForbidden, rec.Code, "a state change from another origin was accepted")
	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: tok, "Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusForbidden, rec.Code)

	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: tok, "Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	// Behind a proxy that rewrote the Host, the console's public origin is still its own.
	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: tok, "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: tok, "Origin": "http://127.0.0.1:2"})
	require.Equal(t, http.StatusForbidden, rec.Code, "another port is another origin")

	// Another session's token is not this one's.
	other := env.signIn(t)
	rec = env.do(ck, http.MethodPost, "/api/change", map[string]string{CSRFHeader: env.csrf(t, other)})
	require.Equal(t, http.StatusForbidden, rec.Code)
}

func TestWebSessionTimeouts(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	// Used every 20 minutes, it lives past the idle timeout ...
	for range 3 {
		env.advance(20 * time.Minute)
		require.Equal(t, http.StatusOK, env.do(ck, http.MethodGet, "/api/who", nil).Code)
	}
	// ... but not past 31 idle minutes.
	env.advance(31 * time.Minute)
	rec := env.do(ck, http.MethodGet, "/api/who", nil)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Body.String(), "idle")
	// Ended is ended: coming back does not revive it.
	require.Equal(t, http.StatusUnauthorized, env.do(ck, http.MethodGet, "/api/who", nil).Code)

	// A page polling in the background is answered, but does not keep the session alive.
	ck = env.signIn(t)
	for range 14 {
		env.advance(2 * time.Minute)
		require.Equal(t, http.StatusOK, env.do(ck, http.MethodGet, "/api/who", map[string]string{PollHeader: "1"}).Code)
	}
	env.advance(3 * time.Minute)
	require.Equal(t, http.StatusUnauthorized, env.do(ck, http.MethodGet, "/api/who", map[string]string{PollHeader: "1"}).Code, "polling kept an idle session alive")

	// However busy, a session ends at its absolute timeout.
	ck = env.signIn(t)
	used := 0
	for {
		env.advance(20 * time.Minute)
		if rec = env.do(ck, http.MethodGet, "/api/who", nil); rec.Code != http.StatusOK {
			break
		}
		used++
	}
	require.Equal(t, 12*3-1, used, "the session did not end at 12 hours")
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Body.String(), "12h0m0s limit")
}

func TestWebSessionSignOutEndsItForEveryone(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	rec := env.do(ck, http.MethodPost, "/signout", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	cleared := rec.Result().Cookies()
	require.Len(t, cleared, 1)
	require.Negative(t, cleared[0].MaxAge, "the cookie is not cleared")
	// The old cookie, kept by an attacker who copied it, no longer works.
	require.Equal(t, http.StatusUnauthorized, env.do(ck, http.MethodGet, "/api/who", nil).Code)
}

func TestPendingIsTakenOnce(t *testing.T) {
	env := newWebSessionEnv(t)
	ctx := context.Background()
	require.NoError(t, env.ws.Pending(ctx, "state-1", map[string]string{"nonce": "n"}))
	require.Error(t, env.ws.Pending(ctx, "state-1", map[string]string{"nonce": "other"}), "a pending record was overwritten")
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v map[string]string
			results[i] = env.ws.Take(ctx, "state-1", &v)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, ErrNoPending)
		}
	}
	require.Equal(t, 1, ok, "a pending sign-in was taken more than once")

	first, err := env.ws.Once(ctx, "assertion-1")
	require.NoError(t, err)
	require.True(t, first)
	again, err := env.ws.Once(ctx, "assertion-1")
	require.NoError(t, err)
	require.False(t, again)
}

func TestWebSessionCookieOverTLSIsHostPrefixedAndSecure(t *testing.T) {
	env := newWebSessionEnv(t)
	env.ws.Secure = true
	rec := env.do(nil, http.MethodPost, "/signin", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	ck := rec.Result().Cookies()[0]
	require.Equal(t, SessionCookie, ck.Name)
	require.True(t, ck.Secure)
	require.True(t, ck.HttpOnly)
	require.Empty(t, ck.Domain, "a __Host- cookie has no domain")
	require.Equal(t, http.StatusOK, env.do(ck, http.MethodGet, "/api/who", nil).Code)
	// The plain-HTTP cookie name is not accepted where the Secure one is expected.
	require.Equal(t, http.StatusUnauthorized, env.do(&http.Cookie{Name: SessionCookieNotTLS, Value: ck.Value}, http.MethodGet, "/api/who", nil).Code)
}

// signOutKV signs the session out (deletes it) just before a use is written back, as a
// sign-out on another replica would between the read and the write.
type signOutKV struct{ jetstream.KeyValue }

func (k signOutKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	_ = k.KeyValue.Delete(ctx, key)
	return k.KeyValue.Update(ctx, key, value, rev)
}

// Recording a use never brings back a session signed out meanwhile.
func TestWebSessionUseDoesNotUndoASignOut(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	env.ws.kv = signOutKV{env.kv}
	env.advance(2 * time.Minute) // due for a write-back
	require.Equal(t, http.StatusOK, env.do(ck, http.MethodGet, "/api/who", nil).Code)
	env.ws.kv = env.kv
	require.Equal(t, http.StatusUnauthorized, env.do(ck, http.MethodGet, "/api/who", nil).Code, "a signed-out session came back")
}

// Signing in again in the same browser ends the session it had: a copy of the old cookie
// stops working.
func TestWebSessionSignInAgainEndsTheOldOne(t *testing.T) {
	env := newWebSessionEnv(t)
	old := env.signIn(t)
	req := httptest.NewRequest(http.MethodPost, "/signin", nil)
	req.AddCookie(old)
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	fresh := rec.Result().Cookies()[0]
	require.NotEqual(t, old.Value, fresh.Value)
	require.Equal(t, http.StatusOK, env.do(fresh, http.MethodGet, "/api/who", nil).Code)
	require.Equal(t, http.StatusUnauthorized, env.do(old, http.MethodGet, "/api/who", nil).Code)
}

// A record this version cannot read ends the session instead of failing every page.
func TestWebSessionUnreadableRecordEndsIt(t *testing.T) {
	env := newWebSessionEnv(t)
	ck := env.signIn(t)
	_, err := env.kv.Put(context.Background(), storeKey("s", ck.Value), []byte("{not json"))
	require.NoError(t, err)
	rec := env.do(ck, http.MethodGet, "/api/who", nil)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Body.String(), "could not be read")
}
