package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
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

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/sshcert"
	"github.com/gatehouse/gatehouse/sshca"
)

// lockedBuffer is an output the command writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sshGateway serves what `gatehouse ssh login` talks to: the development issuer, the CA
// API (with a real verifier), and, under /fake, an issuer without the device flow. tokens
// collects the bearer tokens the CA API received.
type sshGateway struct {
	url    string
	dev    *identity.DevIssuer
	ca     ssh.Signer
	mu     sync.Mutex
	tokens []string
}

func newSSHGateway(t *testing.T, loginIssuer func(g *sshGateway) string) *sshGateway {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	g := &sshGateway{url: srv.URL}
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if tok, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer "); ok {
				g.mu.Lock()
				g.tokens = append(g.tokens, tok)
				g.mu.Unlock()
			}
			return next(c)
		}
	})
	dev, err := identity.NewDevIssuer(srv.URL+identity.DevIssuerPath, t.TempDir(), log)
	require.NoError(t, err)
	dev.Register(e)
	g.dev = dev
	g.ca = testSigner(t)
	host := testSigner(t)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, log)
	api := &sshca.API{CA: g.ca, HostKeys: []ssh.PublicKey{host.PublicKey()}, SSHAddress: "127.0.0.1:2222", Verifier: v,
		Login: sshca.Login{Issuer: loginIssuer(g), ClientID: config.DefaultLoginClientID, Scopes: []string{"openid"}}, Log: log}
	api.Register(e)
	registerFakeIssuer(t, e, g)
	return g
}

func testSigner(t *testing.T) ssh.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(k)
	require.NoError(t, err)
	return s
}

// registerFakeIssuer serves an issuer with only the authorization code flow (PKCE
// required), whose tokens the development issuer mints (so the CA API accepts them).
func registerFakeIssuer(t *testing.T, e *echo.Echo, g *sshGateway) {
	iss := g.url + "/fake"
	var challenge, redirect string
	e.GET("/fake/.well-known/openid-configuration", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token"})
	})
	e.GET("/fake/authorize", func(c echo.Context) error {
		q := c.Request().URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != config.DefaultLoginClientID || q.Get("code_challenge_method") != "S256" ||
			!strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") || q.Get("state") == "" {
			return c.String(http.StatusBadRequest, "bad authorization request")
		}
		challenge, redirect = q.Get("code_challenge"), q.Get("redirect_uri")
		return c.Redirect(http.StatusFound, redirect+"?code=the-code&state="+url.QueryEscape(q.Get("state")))
	})
	e.POST("/fake/token", func(c echo.Context) error {
		sum := sha256.Sum256([]byte(c.FormValue("code_verifier")))
		if c.FormValue("grant_type") != "authorization_code" || c.FormValue("code") != "the-code" || c.FormValue("redirect_uri") != redirect ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		}
		tok, err := g.dev.Mint(identity.TokenRequest{Subject: "grace", Name: "grace@example.com", TTL: 20 * time.Minute, Kind: "human"})
		require.NoError(t, err)
		return c.JSON(http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 1200})
	})
}

// runAsync runs the command line while the test plays the person signing in.
func runAsync(args ...string) (stdout, stderr *lockedBuffer, done <-chan int) {
	stdout, stderr = &lockedBuffer{}, &lockedBuffer{}
	ch := make(chan int, 1)
	go func() { ch <- Main(args, stdout, stderr) }()
	return stdout, stderr, ch
}

func waitFor(t *testing.T, w *lockedBuffer, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	require.Eventually(t, func() bool { m = re.FindStringSubmatch(w.String()); return m != nil }, 20*time.Second, 20*time.Millisecond, "stderr: %s", w)
	return m[1]
}

func exitCode(t *testing.T, done <-chan int, stderr *lockedBuffer) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("gatehouse ssh login did not finish: %s", stderr)
		return -1
	}
}

// certIn reads and verifies the certificate written in dir.
func (g *sshGateway) certIn(t *testing.T, dir string) (*ssh.Certificate, string) {
	b, err := os.ReadFile(filepath.Join(dir, "id_ed25519-cert.pub"))
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	require.NoError(t, err)
	id, _, err := sshcert.Verify([]ssh.PublicKey{g.ca.PublicKey()}, pub, time.Now())
	require.NoError(t, err)
	return pub.(*ssh.Certificate), id.Subject
}

func TestSSHLoginDeviceFlow(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	g := newSSHGateway(t, func(g *sshGateway) string { return g.dev.Issuer() })
	dir := filepath.Join(t.TempDir(), "gh ssh")
	stdout, stderr, done := runAsync("ssh", "login", "--gateway", g.url, "--dir", dir)

	// The person opens the page printed, checks the code and approves as ada.
	page := waitFor(t, stderr, regexp.MustCompile(`(http://\S+/device\?user_code=\S+)`))
	u, err := url.Parse(page)
	require.NoError(t, err)
	require.Contains(t, stderr.String(), "and check that it shows the code "+u.Query().Get("user_code"))
	resp, err := http.Get(page)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="form_token" value="([^"]+)"`).FindStringSubmatch(string(body))
	require.NotNil(t, m, string(body))
	resp, err = http.PostForm(g.dev.Issuer()+"/device", url.Values{"user_code": {u.Query().Get("user_code")}, "form_token": {m[1]},
		"action": {"approve"}, "sub": {"ada"}, "name": {"ada@example.com"}, "groups": {"ops"}, "ttl": {"30m"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.Equal(t, 0, exitCode(t, done, stderr), stderr.String())
	out, errOut := stdout.String(), stderr.String()

	// The files: the key 0600 (and its .pub), the certificate for it, known_hosts.
	st, err := os.Stat(filepath.Join(dir, "id_ed25519"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	cert, sub := g.certIn(t, dir)
	require.Equal(t, "ada", sub)
	require.WithinDuration(t, time.Now().Add(30*time.Minute), time.Unix(int64(cert.ValidBefore), 0), time.Minute)
	key, err := os.ReadFile(filepath.Join(dir, "id_ed25519"))
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(key)
	require.NoError(t, err)
	require.Equal(t, signer.PublicKey().Marshal(), cert.Key.Marshal())
	kh, err := os.ReadFile(filepath.Join(dir, "known_hosts"))
	require.NoError(t, err)
	require.Regexp(t, `^\[127\.0\.0\.1\]:2222 ssh-ed25519 AAAA\S+\n$`, string(kh))

	// The snippet, the usage line, the expiry.
	require.Contains(t, out, "Host gatehouse\n  HostName 127.0.0.1\n  Port 2222\n  IdentityFile \""+filepath.Join(dir, "id_ed25519")+"\"\n  CertificateFile \""+
		filepath.Join(dir, "id_ed25519-cert.pub")+"\"\n  UserKnownHostsFile \""+filepath.Join(dir, "known_hosts")+"\"\n  IdentitiesOnly yes\n")
	require.Contains(t, out, "ssh RESOURCE+LOGIN@gatehouse")
	require.Contains(t, out, "ssh web-1+deploy@gatehouse")
	require.Contains(t, out, "The certificate is valid until "+time.Unix(int64(cert.ValidBefore), 0).Local().Format(time.RFC3339))
	require.Contains(t, errOut, "Signed in.")

	// The token reached the gateway, and never the terminal.
	g.mu.Lock()
	tokens := g.tokens
	g.mu.Unlock()
	require.Len(t, tokens, 1)
	require.NotContains(t, out, tokens[0])
	require.NotContains(t, errOut, tokens[0])

	// Real OpenSSH reads the printed lines as its configuration.
	if _, err := exec.LookPath("ssh"); err == nil {
		cfg := filepath.Join(t.TempDir(), "config")
		require.NoError(t, os.WriteFile(cfg, []byte(out), 0o600))
		resolved, err := exec.Command("ssh", "-F", cfg, "-G", "web-1+deploy@gatehouse").CombinedOutput()
		require.NoError(t, err, string(resolved))
		for _, want := range []string{"user web-1+deploy\n", "hostname 127.0.0.1\n", "port 2222\n", "identitiesonly yes\n",
			"certificatefile " + filepath.Join(dir, "id_ed25519-cert.pub") + "\n", "userknownhostsfile " + filepath.Join(dir, "known_hosts")} {
			require.Contains(t, string(resolved), want)
		}
	}

	// Again with a token (scripts): no sign-in, the same key, a new certificate.
	tok, err := g.dev.Mint(identity.TokenRequest{Subject: "ada", TTL: 10 * time.Minute, Kind: "human"})
	require.NoError(t, err)
	t.Setenv("GATEHOUSE_TOKEN", tok)
	code, out, errOut := run("ssh", "login", "--gateway", g.url, "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "Using the token from GATEHOUSE_TOKEN (no sign-in).")
	require.NotContains(t, out+errOut, tok)
	cert2, _ := g.certIn(t, dir)
	require.Equal(t, cert.Key.Marshal(), cert2.Key.Marshal(), "the key is reused")
	require.NotEqual(t, cert.Serial, cert2.Serial)
}

func TestSSHLoginDenied(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	g := newSSHGateway(t, func(g *sshGateway) string { return g.dev.Issuer() })
	_, stderr, done := runAsync("ssh", "login", "--gateway", g.url, "--dir", t.TempDir())
	page := waitFor(t, stderr, regexp.MustCompile(`(http://\S+/device\?user_code=\S+)`))
	resp, err := http.Get(page)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="form_token" value="([^"]+)"`).FindStringSubmatch(string(body))
	u, _ := url.Parse(page)
	resp, err = http.PostForm(g.dev.Issuer()+"/device", url.Values{"user_code": {u.Query().Get("user_code")}, "form_token": {m[1]}, "action": {"deny"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 1, exitCode(t, done, stderr))
	require.Contains(t, stderr.String(), "gatehouse: the sign-in was denied\n")
}

func TestSSHLoginBrowserFlow(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	g := newSSHGateway(t, func(g *sshGateway) string { return g.url + "/fake" })
	dir := t.TempDir()
	stdout, stderr, done := runAsync("ssh", "login", "--gateway", g.url, "--dir", dir, "--no-browser")
	authURL := waitFor(t, stderr, regexp.MustCompile(`(http://\S+/fake/authorize\?\S+)`))
	// The browser follows the issuer's redirect to the command's loopback callback.
	resp, err := http.Get(authURL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), "Signed in.")
	require.Equal(t, 0, exitCode(t, done, stderr), stderr.String())
	_, sub := g.certIn(t, dir)
	require.Equal(t, "grace", sub)
	require.Contains(t, stdout.String(), "Host gatehouse\n")
}

func TestSSHLoginErrors(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	code, _, errOut := run("ssh", "login", "--token", "not-a-token", "--dir", t.TempDir())
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--token is not a token")
	code, _, errOut = run("ssh", "login", "--gateway", "http://127.0.0.1:1", "--dir", t.TempDir())
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "ask the gateway where to sign in")
	code, _, errOut = run("ssh", "login", "extra")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "takes no arguments")
}
