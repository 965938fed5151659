package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/sshca"
)

// loginGateway serves what `gatehouse login` and `gatehouse connect` talk to: the
// development issuer, the sign-in announcement, and the connect route for a postgres
// resource demo and a kubernetes resource dev-k8s (tokens verified for real).
type loginGateway struct {
	url string
	dev *identity.DevIssuer
	// connect and clusters are the answers of the connect and kube cluster routes, by
	// resource; a test may change them.
	mu       sync.Mutex
	connect  map[string]app.ConnectInfo
	clusters map[string]app.KubeCluster
}

// answer sets the connect route's answer for resource.
func (g *loginGateway) answer(resource string, ci app.ConnectInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.connect[resource] = ci
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
	g := &loginGateway{url: srv.URL, dev: dev, connect: map[string]app.ConnectInfo{
		"demo":    {Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: 6432, Database: "demo", TLS: true},
		"dev-k8s": {Resource: "dev-k8s", Protocol: "kubernetes", Host: "127.0.0.1", Port: 8443, TLS: true, URL: "https://127.0.0.1:8443/k8s/dev"},
	}, clusters: map[string]app.KubeCluster{}}
	e.GET(app.ConnectPath+":resource", func(c echo.Context) error {
		g.mu.Lock()
		ci, ok := g.connect[c.Param("resource")]
		g.mu.Unlock()
		if !ok {
			return echo.NewHTTPError(http.StatusNotFound, "no resource")
		}
		return c.JSON(http.StatusOK, ci)
	}, v.Middleware(nil, ""))
	e.GET(app.KubeClustersPath+":resource", func(c echo.Context) error {
		g.mu.Lock()
		cl, ok := g.clusters[c.Param("resource")]
		g.mu.Unlock()
		if !ok {
			cl = app.KubeCluster{Resource: c.Param("resource"), Server: "https://127.0.0.1:8443/k8s/dev"}
		}
		return c.JSON(http.StatusOK, cl)
	}, v.Middleware(nil, ""))
	return g
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
	require.Equal(t, `PGPASSWORD="$PGPASSWORD" psql 'host=127.0.0.1 port=6432 dbname=demo sslmode=verify-full user=alice@example.com' -c 'select 1'`+"\n", out)
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
	require.Equal(t, "arg:host=127.0.0.1 port=6432 dbname=demo sslmode=verify-full user=alice@example.com\narg:-c\narg:select 1\nPGPASSWORD:"+tok+"\n", out)

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
	// Any space libpq splits on, not only ' ', is quoted.
	require.Equal(t, "'demo\rsslmode=disable'", libpqQuote("demo\rsslmode=disable"))
	require.Equal(t, "'a\vb'", libpqQuote("a\vb"))
	cc, err := psqlCommand(app.ConnectInfo{Host: "db.example.com", Port: 5432, Database: "orders", TLS: true}, "orders", "ann o'neil", "SECRET", []string{"-X"})
	require.NoError(t, err)
	require.Equal(t, []string{"PGPASSWORD=SECRET"}, cc.env)
	require.NotContains(t, strings.Join(cc.argv, " "), "SECRET")
	require.Equal(t, `PGPASSWORD="$PGPASSWORD" psql 'host=db.example.com port=5432 dbname=orders sslmode=verify-full user='\''ann o\'\''neil'\''' -X`, cc.shell())
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

// writeSSHCert writes a key and a valid certificate where `gatehouse ssh login` would.
func writeSSHCert(t *testing.T, dir string) {
	t.Helper()
	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ca, err := ssh.NewSignerFromKey(caKey)
	require.NoError(t, err)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sp, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	cert := &ssh.Certificate{Key: sp, CertType: ssh.UserCert, ValidPrincipals: []string{"root"},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	require.NoError(t, cert.SignCert(rand.Reader, ca))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "id_ed25519-cert.pub"), ssh.MarshalAuthorizedKey(cert), 0o600))
}

// fakeClient puts a stand-in for a client that prints its arguments and leaves ran behind;
// it returns the path of ran.
func fakeClient(t *testing.T, prog *string) string {
	t.Helper()
	bin := t.TempDir()
	fake, ran := filepath.Join(bin, filepath.Base(*prog)), filepath.Join(bin, "ran")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\ntouch "+ran+"\nfor a in \"$@\"; do echo \"arg:$a\"; done\n"), 0o755))
	prev := *prog
	*prog = fake
	t.Cleanup(func() { *prog = prev })
	return ran
}

// ssh gets the resource typed, the account and the host as plain names, after --; the
// person's ssh options still come before it and their command after.
func TestConnectSSHArguments(t *testing.T) {
	signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"pick": {"alice@example.com"}})
	keys := t.TempDir()
	writeSSHCert(t, keys)
	fakeClient(t, &sshProgram)
	g.answer("web-1", app.ConnectInfo{Resource: "web-1", Protocol: "ssh", Host: "127.0.0.1", Port: 2222})
	code, out, errOut := run("connect", "web-1", "--user", "root", "--ssh-dir", keys, "--", "-L", "8080:x:80", "-v", "uptime", "-l")
	require.Equal(t, 0, code, errOut)
	args := strings.Split(strings.TrimSpace(strings.ReplaceAll(out, "arg:", "")), "\n")
	require.Equal(t, []string{"-p", "2222", "-L", "8080:x:80", "-v", "--", "web-1+root@127.0.0.1", "uptime", "-l"}, args[len(args)-9:])

	require.Equal(t, []string{"-oX", "-L", "a"}, first(sshSplitArgs([]string{"-oX", "-L", "a", "cmd", "-x"})))
	opts, cmd := sshSplitArgs([]string{"-t", "--", "-weird-command"})
	require.Equal(t, []string{"-t"}, opts)
	require.Equal(t, []string{"-weird-command"}, cmd)
	opts, cmd = sshSplitArgs([]string{"uptime"})
	require.Empty(t, opts)
	require.Equal(t, []string{"uptime"}, cmd)

	// An account or a resource that ssh could read as an option is refused.
	code, _, errOut = run("connect", "web-1", "--user", "-oProxyCommand=touch /tmp/x", "--ssh-dir", keys)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "is not an account name")
	code, _, errOut = run("connect", "web 1")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `"web 1" is not a resource name`)
}

func first(a, _ []string) []string { return a }

// A gateway answering hostile values (or someone between it and the person) gets no
// command run: every value is checked before it reaches a command line.
func TestConnectRefusesHostileAnswers(t *testing.T) {
	signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"pick": {"alice@example.com"}})
	keys := t.TempDir()
	writeSSHCert(t, keys)
	ran := []string{fakeClient(t, &sshProgram), fakeClient(t, &psqlProgram), fakeClient(t, &kubectlProgram)}
	ssh := func(ci app.ConnectInfo) app.ConnectInfo {
		ci.Protocol = "ssh"
		if ci.Resource == "" {
			ci.Resource = "web-1"
		}
		if ci.Host == "" {
			ci.Host = "127.0.0.1"
		}
		if ci.Port == 0 {
			ci.Port = 2222
		}
		return ci
	}
	pg := func(ci app.ConnectInfo) app.ConnectInfo {
		ci.Protocol, ci.Port = "postgres", 6432
		if ci.Resource == "" {
			ci.Resource = "web-1"
		}
		if ci.Host == "" {
			ci.Host = "127.0.0.1"
		}
		return ci
	}
	for _, tc := range []struct {
		name    string
		answer  app.ConnectInfo
		cluster *app.KubeCluster
		want    string
	}{
		{"ssh resource as an option", ssh(app.ConnectInfo{Resource: "-oProxyCommand=touch /tmp/pwned"}), nil, `has the resource "-oProxyCommand=touch /tmp/pwned"`},
		{"ssh another resource", ssh(app.ConnectInfo{Resource: "prod-db"}), nil, `has the resource "prod-db"`},
		{"ssh host as an option", ssh(app.ConnectInfo{Host: "-oProxyCommand=sh -c id"}), nil, `has the host "-oProxyCommand=sh -c id"`},
		{"ssh host with a space", ssh(app.ConnectInfo{Host: "example.com -oProxyCommand=id"}), nil, "has the host"},
		{"ssh host with a user", ssh(app.ConnectInfo{Host: "root@example.com"}), nil, "has the host"},
		{"ssh host with escapes", ssh(app.ConnectInfo{Host: "\x1b]0;x\x07"}), nil, `has the host "\x1b]0;x\a"`},
		{"ssh port", ssh(app.ConnectInfo{Port: -1}), nil, `has the port "-1"`},
		{"psql database", pg(app.ConnectInfo{Database: "web-1' sslmode='disable"}), nil, "has the database"},
		{"psql host", pg(app.ConnectInfo{Host: "127.0.0.1 sslmode=disable"}), nil, "has the host"},
		{"psql host as an option", pg(app.ConnectInfo{Host: "-h"}), nil, "has the host"},
		{"psql CA with a key", pg(app.ConnectInfo{TLS: true, CAPEM: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}), nil, "is not a PEM certificate: refused"},
		{"kubectl path out of the config directory", app.ConnectInfo{Resource: "web-1", Protocol: "kubernetes", URL: "https://127.0.0.1:8443/k"},
			&app.KubeCluster{Resource: "../../../../tmp/evil", Server: "https://127.0.0.1:8443/k"}, `with another, "../../../../tmp/evil"`},
		{"kubectl server in clear", app.ConnectInfo{Resource: "web-1", Protocol: "kubernetes", URL: "https://127.0.0.1:8443/k"},
			&app.KubeCluster{Resource: "web-1", Server: "http://k8s.example.com/k"}, "plain http to another machine"},
		{"http file URL", app.ConnectInfo{Resource: "web-1", Protocol: "http", URL: "file:///etc/passwd"}, nil, "which is not http(s): refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.answer("web-1", tc.answer)
			g.mu.Lock()
			delete(g.clusters, "web-1")
			if tc.cluster != nil {
				g.clusters["web-1"] = *tc.cluster
			}
			g.mu.Unlock()
			code, out, errOut := run("connect", "web-1", "--user", "root", "--ssh-dir", keys)
			require.Equal(t, 1, code, out+errOut)
			require.Contains(t, errOut, tc.want)
			require.Contains(t, errOut, "refused")
			require.False(t, strings.ContainsAny(errOut, "\x1b\x07"))
			for _, r := range ran {
				require.NoFileExists(t, r)
			}
		})
	}
}

// tlsPostgres is a PostgreSQL server as far as TLS: it answers SSLRequest, completes the
// handshake with cert, then refuses the startup (saying the handshake held), never asking
// for a password. It reports each handshake's outcome.
func tlsPostgres(t *testing.T, certFile, keyFile string) (port int, handshakes <-chan error) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var req [8]byte
				for {
					if _, err := io.ReadFull(c, req[:]); err != nil {
						return
					}
					if binary.BigEndian.Uint32(req[4:]) == 80877103 { // SSLRequest
						break
					}
					_, _ = c.Write([]byte("N")) // GSSENCRequest: no
				}
				_, _ = c.Write([]byte("S"))
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"postgresql"}})
				err := tc.Handshake()
				ch <- err
				if err != nil {
					return
				}
				var n [4]byte
				if _, err := io.ReadFull(tc, n[:]); err != nil {
					return
				}
				_, _ = io.CopyN(io.Discard, tc, int64(binary.BigEndian.Uint32(n[:]))-4)
				msg := "SFATAL\x00C28000\x00Mhandshake verified\x00\x00"
				resp := append([]byte{'E', 0, 0, 0, 0}, msg...)
				binary.BigEndian.PutUint32(resp[1:], uint32(len(msg)+4))
				_, _ = tc.Write(resp)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, ch
}

// psql verifies the PostgreSQL proxy's certificate against the CA the gateway gives
// (verify-full, the CA kept under the config directory), so a token is not sent to
// whoever answers; without TLS it is sent only to this machine.
func TestConnectPostgresVerifiesTheProxy(t *testing.T) {
	dir := signInEnv(t)
	g := newLoginGateway(t)
	browserLogin(t, g, url.Values{"pick": {"alice@example.com"}})
	certFile, keyFile, err := devcert.Ensure(t.TempDir())
	require.NoError(t, err)
	certPEM, err := os.ReadFile(certFile)
	require.NoError(t, err)
	port, handshakes := tlsPostgres(t, certFile, keyFile)
	g.answer("demo", app.ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: port, Database: "demo", TLS: true, CAPEM: string(certPEM)})

	ca := filepath.Join(dir, "postgres", "demo.crt")
	code, out, errOut := run("connect", "demo", "--print")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, fmt.Sprintf(`PGPASSWORD="$PGPASSWORD" psql 'host=127.0.0.1 port=%d dbname=demo sslmode=verify-full sslrootcert=%s user=alice@example.com'`+"\n", port, ca), out)
	b, err := os.ReadFile(ca)
	require.NoError(t, err)
	require.Equal(t, certPEM, b)
	st, err := os.Stat(ca)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Without TLS: in clear to this machine only.
	g.answer("demo", app.ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: 6432, Database: "demo"})
	code, out, errOut = run("connect", "demo", "--print")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sslmode=disable")
	g.answer("demo", app.ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "db.example.com", Port: 6432, Database: "demo"})
	code, out, errOut = run("connect", "demo", "--print")
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "the PostgreSQL proxy for demo (db.example.com:6432) does not speak TLS, and psql would send your token, which also opens the gateway's API, in clear to another machine: refused")

	// The real psql: the proxy's certificate verifies; another's does not, and psql stops
	// at the handshake.
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql is not installed: the command line is checked above, not psql's verification")
	}
	g.answer("demo", app.ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: port, Database: "demo", TLS: true, CAPEM: string(certPEM)})
	t.Setenv("PGCONNECT_TIMEOUT", "10")
	code, _, errOut = run("connect", "demo", "--", "-X", "-c", "select 1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "handshake verified")
	require.NoError(t, <-handshakes)

	otherCert, _, err := devcert.Ensure(t.TempDir())
	require.NoError(t, err)
	otherPEM, err := os.ReadFile(otherCert)
	require.NoError(t, err)
	g.answer("demo", app.ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: port, Database: "demo", TLS: true, CAPEM: string(otherPEM)})
	code, _, errOut = run("connect", "demo", "--", "-X", "-c", "select 1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "certificate verify failed")
	require.NotContains(t, errOut, "handshake verified")
	require.Error(t, <-handshakes)
}
