package cli

// `gatehouse ssh login`: sign in at the gateway's issuer (device flow, or the authorization
// code flow with PKCE and a loopback redirect when the issuer has no device endpoint),
// exchange the token for a short-lived SSH certificate (sshca), and write what plain `ssh`
// needs: the key, the certificate, the gateway's host keys; then print the ~/.ssh/config
// lines. The token is never printed.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/services/sshcert"
	"github.com/gatehouse/gatehouse/sshca"
)

// sshHostAlias is the Host name of the ~/.ssh/config lines printed.
const sshHostAlias = "gatehouse"

func sshCmd(args []string, stdout, stderr io.Writer) error {
	// Main has checked that args[0] is a subcommand of the table; login is the only one.
	return sshLoginCmd(args[1:], stdout, stderr)
}

func sshLoginCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ssh login", stdout)
	gateway := fs.String("gateway", "", "Gatehouse HTTP address (default: $GATEHOUSE_URL, else http://127.0.0.1:8080)")
	token := fs.String("token", "", "exchange this token for the certificate instead of signing in, for scripts (default: $GATEHOUSE_TOKEN when set)")
	dir := fs.String("dir", "~/.gatehouse/ssh", "directory of the key (id_ed25519, made on first use, mode 0600), the certificate (id_ed25519-cert.pub) and known_hosts")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser for an issuer without the device flow: only print the sign-in URL (the device flow never opens one)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	base := strings.TrimRight(*gateway, "/")
	if base == "" {
		base = apiURL()
	}
	keyDir, err := expandHome(*dir)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}

	tok, from := *token, "--token"
	if tok == "" {
		tok, from = strings.TrimSpace(os.Getenv("GATEHOUSE_TOKEN")), "GATEHOUSE_TOKEN"
	}
	if tok != "" {
		if err := looksLikeToken(tok); err != nil {
			return usageError{fmt.Sprintf("%s is not a token: %v", from, err)}
		}
		fmt.Fprintf(stderr, "Using the token from %s (no sign-in).\n", from)
	} else {
		var li sshca.LoginInfo
		if err := getJSON(ctx, hc, base+sshca.LoginPath, &li); err != nil {
			return fmt.Errorf("ask the gateway where to sign in: %w", err)
		}
		if tok, err = signIn(ctx, hc, li, !*noBrowser, stderr); err != nil {
			return err
		}
	}

	signer, err := loadOrCreateUserKey(filepath.Join(keyDir, "id_ed25519"))
	if err != nil {
		return err
	}
	body, _ := json.Marshal(sshca.CertificateRequest{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))})
	var cr sshca.CertificateResponse
	api := &apiClient{base: base, token: tok, http: hc}
	if err := api.post(sshca.CertificatesPath, body, &cr); err != nil {
		return fmt.Errorf("get an SSH certificate: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cr.Certificate))
	if err != nil {
		return fmt.Errorf("the gateway sent a certificate that does not parse: %w", err)
	}
	if cert, ok := pub.(*ssh.Certificate); !ok || string(cert.Key.Marshal()) != string(signer.PublicKey().Marshal()) {
		return errors.New("the gateway sent a certificate for another key")
	}
	until, err := time.Parse(time.RFC3339, cr.ValidBefore)
	if err != nil {
		return fmt.Errorf("the gateway sent valid_before %q: %w", cr.ValidBefore, err)
	}
	host, port, err := net.SplitHostPort(cr.SSHAddress)
	if err != nil {
		return fmt.Errorf("the gateway's ssh_address %q: %w", cr.SSHAddress, err)
	}
	certPath, khPath := filepath.Join(keyDir, "id_ed25519-cert.pub"), filepath.Join(keyDir, "known_hosts")
	if err := writeFileAtomic(certPath, []byte(cr.Certificate+"\n"), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(khPath, []byte(strings.Join(cr.HostKeys, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Certificate for %s written to %s.\n", cr.KeyID, certPath)

	fmt.Fprintf(stdout, "# Gatehouse SSH: add to ~/.ssh/config (once; `gatehouse ssh login` renews the certificate)\n")
	fmt.Fprintf(stdout, "Host %s\n  HostName %s\n", sshHostAlias, host)
	if port != "22" {
		fmt.Fprintf(stdout, "  Port %s\n", port)
	}
	fmt.Fprintf(stdout, "  IdentityFile %s\n  CertificateFile %s\n  UserKnownHostsFile %s\n  IdentitiesOnly yes\n",
		configPath(filepath.Join(keyDir, "id_ed25519")), configPath(certPath), configPath(khPath))
	fmt.Fprintf(stdout, "\n# Connect: ssh RESOURCE+LOGIN@%[1]s (the user name picks the resource and the account), e.g. ssh web-1+deploy@%[1]s\n", sshHostAlias)
	fmt.Fprintf(stdout, "# The certificate is valid until %s (%s from now, the token's expiry); then run gatehouse ssh login again.\n",
		until.Local().Format(time.RFC3339), time.Until(until).Round(time.Minute))
	return nil
}

// expandHome reads ~/ at the start of a path as the home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("--dir %s: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// configPath is a path as ssh_config takes it: ~/ for the home directory, quoted when it
// holds a space. ssh reads ~ as the account's home directory (passwd), not $HOME: where
// they differ, the path stays absolute.
func configPath(p string) string {
	home, err := os.UserHomeDir()
	if u, uerr := user.Current(); err == nil && uerr == nil && home != "" && filepath.Clean(u.HomeDir) == filepath.Clean(home) &&
		strings.HasPrefix(p, home+string(filepath.Separator)) {
		p = "~/" + strings.TrimPrefix(p, home+string(filepath.Separator))
	}
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

// loadOrCreateUserKey reads the Ed25519 key at path, or makes one (0600, and path.pub).
func loadOrCreateUserKey(path string) (ssh.Signer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	s, err := sshcert.LoadOrCreateKey(path)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("%s is protected by a passphrase: use another --dir (a key is made there)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("SSH key: %w", err)
	}
	// ssh refuses a private key others can read.
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// getJSON GETs u and decodes the JSON answer; another status is an error with the body's
// message.
func getJSON(ctx context.Context, hc *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", u, resp.Status, apiMessage(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	return nil
}

// oidcEndpoints are the parts of an issuer's discovery document sign-in uses.
type oidcEndpoints struct {
	Issuer                      string `json:"issuer"`
	TokenEndpoint               string `json:"token_endpoint"`
	AuthorizationEndpoint       string `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

// tokenAnswer is a token endpoint's answer, success or error (RFC 6749 5.1, 5.2).
type tokenAnswer struct {
	AccessToken      string `json:"access_token"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (t *tokenAnswer) err() error {
	if t.ErrorDescription != "" {
		return fmt.Errorf("%s: %s", t.Error, t.ErrorDescription)
	}
	return errors.New(t.Error)
}

// postForm posts form to u and decodes a JSON answer whatever the status (OAuth errors are
// 400s with a JSON body).
func postForm(ctx context.Context, hc *http.Client, u string, form url.Values, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %s: %s", u, resp.Status, apiMessage(b))
	}
	return resp.StatusCode, nil
}

// signIn gets an access token from the issuer li names: the device flow when the issuer
// offers it, else the authorization code flow with PKCE.
func signIn(ctx context.Context, hc *http.Client, li sshca.LoginInfo, browser bool, stderr io.Writer) (string, error) {
	var ep oidcEndpoints
	if err := getJSON(ctx, hc, strings.TrimRight(li.Issuer, "/")+"/.well-known/openid-configuration", &ep); err != nil {
		return "", fmt.Errorf("discover the issuer %s: %w", li.Issuer, err)
	}
	if strings.TrimRight(ep.Issuer, "/") != strings.TrimRight(li.Issuer, "/") {
		return "", fmt.Errorf("the discovery document of %s names another issuer, %q", li.Issuer, ep.Issuer)
	}
	if ep.TokenEndpoint == "" {
		return "", fmt.Errorf("the issuer %s has no token endpoint", li.Issuer)
	}
	if ep.DeviceAuthorizationEndpoint != "" {
		return deviceSignIn(ctx, hc, ep, li, stderr)
	}
	if ep.AuthorizationEndpoint == "" {
		return "", fmt.Errorf("the issuer %s offers neither the device flow nor an authorization endpoint: pass a token with --token", li.Issuer)
	}
	return browserSignIn(ctx, hc, ep, li, browser, stderr)
}

// deviceSignIn runs the device authorization grant (RFC 8628): it prints the page and the
// code, and polls at the interval the issuer asks for until the person approves, denies,
// or the code expires.
func deviceSignIn(ctx context.Context, hc *http.Client, ep oidcEndpoints, li sshca.LoginInfo, stderr io.Writer) (string, error) {
	var da struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
		tokenAnswer
	}
	if _, err := postForm(ctx, hc, ep.DeviceAuthorizationEndpoint, url.Values{"client_id": {li.ClientID}, "scope": {strings.Join(li.Scopes, " ")}}, &da); err != nil {
		return "", fmt.Errorf("start the sign-in at %s: %w", ep.DeviceAuthorizationEndpoint, err)
	}
	if da.Error != "" || da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		if da.Error == "" {
			da.Error = "the answer lacks device_code, user_code or verification_uri"
		}
		return "", fmt.Errorf("start the sign-in at %s: %w", ep.DeviceAuthorizationEndpoint, da.err())
	}
	expiresIn := time.Duration(da.ExpiresIn) * time.Second
	if expiresIn <= 0 {
		expiresIn = 10 * time.Minute
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second // RFC 8628 3.2's default
	}
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(stderr, "To sign in, open this page in a browser:\n\n  %s\n\nand check that it shows the code %s (or open %s and type the code).\n",
			da.VerificationURIComplete, da.UserCode, da.VerificationURI)
	} else {
		fmt.Fprintf(stderr, "To sign in, open %s in a browser and type the code %s\n", da.VerificationURI, da.UserCode)
	}
	fmt.Fprintf(stderr, "Waiting for the sign-in (the code expires in %s) ...\n", expiresIn)
	deadline := time.Now().Add(expiresIn)
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			return "", errors.New("the sign-in code expired before it was approved: run gatehouse ssh login again")
		}
		var ta tokenAnswer
		code, err := postForm(ctx, hc, ep.TokenEndpoint, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}, "client_id": {li.ClientID}}, &ta)
		if err != nil {
			return "", fmt.Errorf("poll the token endpoint %s: %w", ep.TokenEndpoint, err)
		}
		switch {
		case code == http.StatusOK && ta.AccessToken != "":
			fmt.Fprintln(stderr, "Signed in.")
			return ta.AccessToken, nil
		case ta.Error == "authorization_pending":
		case ta.Error == "slow_down":
			interval += 5 * time.Second
		case ta.Error == "expired_token":
			return "", errors.New("the sign-in code expired before it was approved: run gatehouse ssh login again")
		case ta.Error == "access_denied":
			return "", errors.New("the sign-in was denied")
		case ta.Error != "":
			return "", fmt.Errorf("sign-in failed: %w", ta.err())
		default:
			return "", fmt.Errorf("the token endpoint %s answered %d without a token", ep.TokenEndpoint, code)
		}
	}
}

// browserSignIn runs the authorization code flow with PKCE (RFC 7636) and a loopback
// redirect (RFC 8252 7.3): the person signs in in a browser, which the issuer sends back
// to http://127.0.0.1:PORT/callback with the code.
func browserSignIn(ctx context.Context, hc *http.Client, ep oidcEndpoints, li sshca.LoginInfo, browser bool, stderr io.Writer) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen for the sign-in's redirect: %w", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr())
	verifier, state := randomURLString(32), randomURLString(16)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {li.ClientID}, "redirect_uri": {redirect}, "scope": {strings.Join(li.Scopes, " ")},
		"state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	sep := "?"
	if strings.Contains(ep.AuthorizationEndpoint, "?") {
		sep = "&"
	}
	authURL := ep.AuthorizationEndpoint + sep + q.Encode()

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		v := r.URL.Query()
		var res result
		switch {
		case v.Get("state") != state:
			http.Error(w, "This sign-in answer is not for the waiting gatehouse command (state differs).", http.StatusBadRequest)
			return // not ours: keep waiting for the right one
		case v.Get("error") != "":
			res.err = fmt.Errorf("sign-in failed: %s: %s", v.Get("error"), v.Get("error_description"))
		case v.Get("code") == "":
			res.err = errors.New("the issuer redirected back without a code")
		default:
			res.code = v.Get("code")
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if res.err != nil {
			fmt.Fprintln(w, "Sign-in failed; see your terminal.")
		} else {
			fmt.Fprintln(w, "Signed in. You can close this page and return to your terminal.")
		}
		select {
		case done <- res:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	fmt.Fprintf(stderr, "To sign in, open this page in a browser on this machine:\n\n  %s\n\n", authURL)
	if browser {
		openBrowser(authURL)
	}
	fmt.Fprintln(stderr, "Waiting for the sign-in (5 minutes at most) ...")
	var res result
	select {
	case res = <-done:
	case <-time.After(5 * time.Minute):
		return "", errors.New("no sign-in within 5 minutes: run gatehouse ssh login again")
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if res.err != nil {
		return "", res.err
	}
	var ta tokenAnswer
	code, err := postForm(ctx, hc, ep.TokenEndpoint, url.Values{"grant_type": {"authorization_code"}, "code": {res.code},
		"redirect_uri": {redirect}, "client_id": {li.ClientID}, "code_verifier": {verifier}}, &ta)
	if err != nil {
		return "", fmt.Errorf("exchange the sign-in code at %s: %w", ep.TokenEndpoint, err)
	}
	if code != http.StatusOK || ta.AccessToken == "" {
		if ta.Error == "" {
			ta.Error = fmt.Sprintf("status %d without a token", code)
		}
		return "", fmt.Errorf("exchange the sign-in code at %s: %w", ep.TokenEndpoint, ta.err())
	}
	fmt.Fprintln(stderr, "Signed in.")
	return ta.AccessToken, nil
}

func randomURLString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// openBrowser asks the desktop to open u; when it cannot, the printed URL is the way.
func openBrowser(u string) {
	name := "xdg-open"
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		name = "explorer"
	}
	cmd := exec.Command(name, u)
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}
