package cli

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/sshca"
)

// loginGateway serves what `gatehouse login` and `gatehouse connect` talk to: the
// development issuer, the sign-in announcement, and the connect route for a postgres
// resource demo and a kubernetes resource dev-k8s (tokens verified for real).
type loginGateway struct {
	url string
	dev *identity.DevIssuer
}

func newLoginGateway(t *testing.T) *loginGateway {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	dev, err := identity.NewDevIssuer(srv.URL+identity.DevIssuerPath, t.TempDir(), log)
	require.NoError(t, err)
	dev.Register(e)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, log)
	e.GET(app.KubeLoginPath, func(c echo.Context) error {
		return c.JSON(http.StatusOK, sshca.LoginInfo{Issuer: dev.Issuer(), ClientID: config.DefaultLoginClientID, Scopes: []string{"openid", "profile", "email"}})
	})
	e.GET(app.ConnectPath+":resource", func(c echo.Context) error {
		switch c.Param("resource") {
		case "demo":
			return c.JSON(http.StatusOK, app.ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: 6432, Database: "demo", TLS: true})
		case "dev-k8s":
			return c.JSON(http.StatusOK, app.ConnectInfo{Resource: "dev-k8s", Protocol: "kubernetes", Host: "127.0.0.1", Port: 8443, TLS: true, URL: "https://127.0.0.1:8443/k8s/dev"})
		}
		return echo.NewHTTPError(http.StatusNotFound, "no resource")
	}, v.Middleware(nil, ""))
	e.GET(app.KubeClustersPath+":resource", func(c echo.Context) error {
		return c.JSON(http.StatusOK, app.KubeCluster{Resource: c.Param("resource"), Server: "https://127.0.0.1:8443/k8s/dev"})
	}, v.Middleware(nil, ""))
	return &loginGateway{url: srv.URL, dev: dev}
}

// signInEnv points the sign-in at a fresh config directory and away from any token.
func signInEnv(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "config")
	t.Setenv("GATEHOUSE_CONFIG_DIR", dir)
	t.Setenv("GATEHOUSE_TOKEN", "")
	t.Setenv("GATEHOUSE_URL", "")
	return dir
}

// browserLogin runs `gatehouse login` and plays the browser: open the printed URL, pick
// who on the sign-in page, follow the redirect back to the command.
func browserLogin(t *testing.T, g *loginGateway, form url.Values) (string, string) {
	t.Helper()
	stdout, stderr, done := runAsync("login", "--server", g.url, "--no-browser")
	authURL := waitFor(t, stderr, regexp.MustCompile(`(http://\S+/authorize\?\S+)`))
	resp, err := http.Get(authURL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(string(body))
	require.NotNil(t, m, string(body))
	form.Set("request", m[1])
	// The client follows the issuer's redirect to the command's loopback callback.
	resp, err = http.PostForm(g.dev.Issuer()+"/authorize", form)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), "Signed in.")
	require.Equal(t, 0, exitCode(t, done, stderr), stderr.String())
	return stdout.String(), stderr.String()
}

func readCache(t *testing.T, dir string) loginCache {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "token.json"))
	require.NoError(t, err)
	var c loginCache
	require.NoError(t, json.Unmarshal(b, &c))
	return c
}

func writeCache(t *testing.T, dir string, c loginCache) {
	t.Helper()
	require.NoError(t, writeLoginCache(filepath.Join(dir, "token.json"), &c))
}

func TestLoginBrowserFlowAndRefresh(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	out, errOut := browserLogin(t, g, url.Values{"pick": {"carol@example.com"}})
	require.Contains(t, out, "Signed in to "+g.url+" as carol@example.com (groups: gatehouse-admins, auditors, approvers).")
	require.Contains(t, out, "renewed with the refresh token")

	// The cache: 0600 in a 0700 directory, every token, where to renew them.
	st, err := os.Stat(filepath.Join(dir, "token.json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	c := readCache(t, dir)
	require.Equal(t, g.url, c.Server)
	require.Equal(t, g.dev.Issuer(), c.Issuer)
	require.Equal(t, g.dev.Issuer()+"/token", c.TokenEndpoint)
	require.Equal(t, config.DefaultLoginClientID, c.ClientID)
	require.NotEmpty(t, c.RefreshToken)
	require.NotEmpty(t, c.IDToken)
	require.WithinDuration(t, time.Now().Add(time.Hour), c.Expiry, time.Minute)
	// The token never reaches the terminal.
	for _, secret := range []string{c.AccessToken, c.RefreshToken, c.IDToken} {
		require.NotContains(t, out, secret)
		require.NotContains(t, errOut, secret)
	}

	// token --cached prints the cached token while it has more than a minute left.
	code, tokOut, tokErr := run("token", "--cached")
	require.Equal(t, 0, code, tokErr)
	require.Equal(t, c.AccessToken+"\n", tokOut)

	// Within a minute of its expiry it is renewed: a new access token, the refresh token
	// rotated, the file rewritten.
	c.Expiry = time.Now().Add(30 * time.Second)
	writeCache(t, dir, c)
	code, tokOut, tokErr = run("token", "--cached")
	require.Equal(t, 0, code, tokErr)
	renewed := readCache(t, dir)
	require.Equal(t, renewed.AccessToken+"\n", tokOut)
	require.NotEqual(t, c.AccessToken, renewed.AccessToken)
	require.NotEqual(t, c.RefreshToken, renewed.RefreshToken)
	require.WithinDuration(t, time.Now().Add(time.Hour), renewed.Expiry, time.Minute)
	name, groups := whoIs(renewed.AccessToken)
	require.Equal(t, "carol@example.com", name)
	require.Equal(t, []string{"gatehouse-admins", "auditors", "approvers"}, groups)
	st, err = os.Stat(filepath.Join(dir, "token.json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// The spent refresh token no longer works: a clear message to sign in again.
	renewed.RefreshToken, renewed.Expiry = c.RefreshToken, time.Now().Add(-time.Minute)
	writeCache(t, dir, renewed)
	code, tokOut, tokErr = run("token", "--cached")
	require.Equal(t, 1, code)
	require.Empty(t, tokOut)
	require.Contains(t, tokErr, "your sign-in to "+g.url+" expires and could not be renewed (invalid_grant")
	require.Contains(t, tokErr, "run `gatehouse login --server "+g.url+"` again")

	// Another gateway's token is not handed out.
	code, _, tokErr = run("token", "--cached", "--url", "http://127.0.0.1:1")
	require.Equal(t, 1, code)
	require.Contains(t, tokErr, "signed in to "+g.url+", not http://127.0.0.1:1")

	// Logout deletes the file; then there is nothing to print.
	code, out, _ = run("logout")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Signed out of "+g.url)
	_, err = os.Stat(filepath.Join(dir, "token.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
	code, _, tokErr = run("token", "--cached")
	require.Equal(t, 1, code)
	require.Contains(t, tokErr, "not signed in: run `gatehouse login` first")
	code, out, _ = run("logout")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Not signed in.")
}

// A token with a short lifetime is renewed at the first use.
func TestLoginShortTokenIsRenewed(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"action": {"signin"}, "sub": {"erin@example.com"}, "groups": {"ops"}, "ttl": {"30s"}})
	c := readCache(t, dir)
	require.WithinDuration(t, time.Now().Add(30*time.Second), c.Expiry, 5*time.Second)
	code, out, errOut := run("token", "--cached")
	require.Equal(t, 0, code, errOut)
	require.NotEqual(t, c.AccessToken+"\n", out)
	require.NotEqual(t, c.RefreshToken, readCache(t, dir).RefreshToken)
}

func TestLoginDeviceFlow(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	stdout, stderr, done := runAsync("login", "--server", g.url, "--device")
	page := waitFor(t, stderr, regexp.MustCompile(`(http://\S+/device\?user_code=\S+)`))
	u, err := url.Parse(page)
	require.NoError(t, err)
	resp, err := http.Get(page)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="form_token" value="([^"]+)"`).FindStringSubmatch(string(body))
	require.NotNil(t, m, string(body))
	resp, err = http.PostForm(g.dev.Issuer()+"/device", url.Values{"user_code": {u.Query().Get("user_code")}, "form_token": {m[1]},
		"action": {"approve"}, "sub": {"dave@example.com"}, "groups": {"engineers"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 0, exitCode(t, done, stderr), stderr.String())
	require.Contains(t, stdout.String(), "as dave@example.com (groups: engineers)")
	c := readCache(t, dir)
	require.NotEmpty(t, c.RefreshToken)
	require.NotEmpty(t, c.IDToken)
}

func TestConnectPostgres(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"pick": {"alice@example.com"}})
	tok := readCache(t, dir).AccessToken

	// --print: the command, the token as $PGPASSWORD.
	code, out, errOut := run("connect", "demo", "--print", "--", "-c", "select 1")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, `PGPASSWORD="$PGPASSWORD" psql 'host=127.0.0.1 port=6432 dbname=demo sslmode=require user=alice@example.com' -c 'select 1'`+"\n", out)
	require.Contains(t, errOut, `export PGPASSWORD="$(gatehouse token --cached)"`)
	require.NotContains(t, out+errOut, tok)

	// Run: psql (a stand-in that reports what it was given) gets the token in its
	// environment, never in its arguments.
	bin := t.TempDir()
	fake := filepath.Join(bin, "psql")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"arg:$a\"; done\necho \"PGPASSWORD:$PGPASSWORD\"\n"), 0o755))
	defer func(p string) { psqlProgram = p }(psqlProgram)
	psqlProgram = fake
	code, out, errOut = run("connect", "demo", "--", "-c", "select 1")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "arg:host=127.0.0.1 port=6432 dbname=demo sslmode=require user=alice@example.com\narg:-c\narg:select 1\nPGPASSWORD:"+tok+"\n", out)

	// The client's failure is the command's.
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\nexit 3\n"), 0o755))
	code, _, errOut = run("connect", "demo")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "psql exited with status 3")

	code, _, errOut = run("connect", "nosuch", "--print")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "ask the gateway for resource nosuch: 404")
	code, _, errOut = run("connect")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "connect needs one RESOURCE")
}

func TestConnectKubernetes(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"pick": {"dave@example.com"}})
	code, out, errOut := run("connect", "dev-k8s", "--print", "--", "get", "pods")
	require.Equal(t, 0, code, errOut)
	kc := filepath.Join(dir, "kube", "gatehouse-dev-k8s.yaml")
	require.Equal(t, `GATEHOUSE_TOKEN="$GATEHOUSE_TOKEN" kubectl --kubeconfig `+kc+" get pods\n", out)
	b, err := os.ReadFile(kc)
	require.NoError(t, err)
	require.Contains(t, string(b), "server: https://127.0.0.1:8443/k8s/dev")
	require.Contains(t, string(b), "- credential")
	st, err := os.Stat(kc)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestConnectNeedsASignIn(t *testing.T) {
	signInEnv(t)
	code, _, errOut := run("connect", "demo", "--print")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not signed in: run `gatehouse login` first")
}

func TestShellAndLibpqQuoting(t *testing.T) {
	require.Equal(t, "plain", shellQuote("plain"))
	require.Equal(t, `'it'\''s'`, shellQuote("it's"))
	require.Equal(t, "''", shellQuote(""))
	require.Equal(t, `'$(rm -rf /)'`, shellQuote("$(rm -rf /)"))
	require.Equal(t, "demo", libpqQuote("demo"))
	require.Equal(t, `'a b\'c'`, libpqQuote("a b'c"))
	cc := psqlCommand(app.ConnectInfo{Host: "db.example.com", Port: 5432, Database: "orders"}, "ann o'neil", "SECRET", []string{"-X"})
	require.Equal(t, []string{"PGPASSWORD=SECRET"}, cc.env)
	require.NotContains(t, strings.Join(cc.argv, " "), "SECRET")
	require.Equal(t, `PGPASSWORD="$PGPASSWORD" psql 'host=db.example.com port=5432 dbname=orders sslmode=disable user='\''ann o\'\''neil'\''' -X`, cc.shell())
}

// Commands renewing at once (kubectl's credential plugin, connect, token --cached) take
// turns: one spends the refresh token, the others use what it wrote. The development
// issuer refuses a refresh token spent twice, so without the lock all but one would fail
// and the cache could end with a refresh token already rotated away.
func TestLoginConcurrentRenewalsTakeTurns(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"pick": {"carol@example.com"}})
	for round := 0; round < 3; round++ {
		c := readCache(t, dir)
		c.Expiry = time.Now().Add(10 * time.Second)
		writeCache(t, dir, c)
		const n = 8
		type result struct {
			code     int
			out, err string
		}
		results := make(chan result, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			go func() {
				<-start
				code, out, errOut := run("token", "--cached")
				results <- result{code, out, errOut}
			}()
		}
		close(start)
		renewed := map[string]bool{}
		for i := 0; i < n; i++ {
			r := <-results
			require.Equal(t, 0, r.code, r.err)
			renewed[r.out] = true
		}
		after := readCache(t, dir)
		require.Equal(t, map[string]bool{after.AccessToken + "\n": true}, renewed, "every command got the one renewal")
		require.NotEqual(t, c.RefreshToken, after.RefreshToken)
		require.WithinDuration(t, time.Now().Add(time.Hour), after.Expiry, time.Minute)
	}
	// The refresh token kept is the one in force: it renews once more.
	c := readCache(t, dir)
	c.Expiry = time.Now().Add(-time.Minute)
	writeCache(t, dir, c)
	code, out, errOut := run("token", "--cached")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, readCache(t, dir).AccessToken+"\n", out)
}

// A sign-out waits for a renewal under way and is not undone by it.
func TestLogoutWaitsForTheLock(t *testing.T) {
	dir := signInEnv(t)
	writeCache(t, dir, loginCache{Server: "http://127.0.0.1:1", AccessToken: "x.y.z", Expiry: time.Now().Add(time.Hour)})
	path := filepath.Join(dir, "token.json")
	held := make(chan struct{})
	release := make(chan struct{})
	go func() {
		_ = withLoginLock(t.Context(), path, func() error { close(held); <-release; return nil })
	}()
	<-held
	out, errOut, done := runAsync("logout")
	require.Never(t, func() bool { _, err := os.Stat(path); return err != nil }, 200*time.Millisecond, 20*time.Millisecond,
		"logout removed the file while a renewal held the lock")
	close(release)
	require.Equal(t, 0, exitCode(t, done, errOut), errOut.String())
	require.Contains(t, out.String(), "Signed out")
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist)
}
