package cli

// Signing a person in at an OIDC issuer, shared by `gatehouse login`, `gatehouse ssh
// login` and the kube credential plugin: discovery, the device authorization grant (RFC
// 8628), and the authorization code flow with PKCE (RFC 7636) and a loopback redirect
// (RFC 8252 7.3). Tokens are returned, never printed.
//
// What the issuer says is not trusted: every endpoint must be https, or http to this
// machine, before it is called or opened (a file:, UNC or custom-scheme URL handed to
// xdg-open/open/explorer would run whatever the desktop runs for it); every string from it
// reaches the terminal through printable (no escape sequences); an ID token must carry the
// nonce this sign-in sent.

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
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/sshca"
)

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
		return fmt.Errorf("%s: %s: %s", printable(u), resp.Status, printable(apiMessage(b)))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: %w", printable(u), err)
	}
	return nil
}

// checkEndpoint refuses a URL that sign-in must not call or open: anything but https, or
// http to a loopback host (127.0.0.0/8, ::1, localhost). name says whose URL it is.
func checkEndpoint(name, u string) error {
	if err := secureURL(u); err != nil {
		return fmt.Errorf("the issuer's %s %q is refused: %v", name, printable(u), err)
	}
	return nil
}

// secureURL says why u is not https, or http to this machine.
func secureURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.Opaque != "" || p.User != nil {
		return errors.New("not an absolute http(s) URL")
	}
	switch {
	case p.Scheme == "https":
		return nil
	case p.Scheme == "http" && isLoopbackHost(p.Hostname()):
		return nil
	case p.Scheme == "http":
		return errors.New("plain http to another machine: what it carries would travel in clear")
	}
	return fmt.Errorf("scheme %q: only https (or http to this machine) is used", printable(p.Scheme))
}

// isLoopbackHost says whether host names this machine: a loopback IP or localhost.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkLoginServer refuses to sign in to a gateway the token would reach in clear.
func checkLoginServer(base string) error {
	if err := secureURL(base); err != nil {
		return usageError{fmt.Sprintf("refusing to sign in to %s: %v: the token would travel in clear, readable and usable by anyone on the way; use https://, or http only to this machine (127.0.0.1, ::1, localhost)",
			printable(base), err)}
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
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	ExpiresIn        int    `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// err is the answer's error as the terminal may show it.
func (t *tokenAnswer) err() error {
	if t.ErrorDescription != "" {
		return fmt.Errorf("%s: %s", printable(t.Error), printable(t.ErrorDescription))
	}
	return errors.New(printable(t.Error))
}

// tokenSet is what a sign-in gives: the tokens, and where to renew them.
type tokenSet struct {
	tokenAnswer
	Issuer        string
	ClientID      string
	TokenEndpoint string
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
		return resp.StatusCode, fmt.Errorf("%s: %s: %s", printable(u), resp.Status, printable(apiMessage(b)))
	}
	return resp.StatusCode, nil
}

// signInMode picks the flow when the issuer offers both.
type signInMode int

const (
	// preferDevice runs the device flow when offered (`gatehouse ssh login`: works over
	// SSH to another machine), else the browser.
	preferDevice signInMode = iota
	// preferBrowser runs the browser flow when offered (`gatehouse login`), else the device
	// flow.
	preferBrowser
	// deviceOnly runs the device flow (`gatehouse login --device`).
	deviceOnly
)

// signInOptions say how to sign in: the flow, whether to open a browser, and the command
// to run again when the sign-in fails for lack of time.
type signInOptions struct {
	mode    signInMode
	browser bool
	again   string
}

// signIn gets an access token from the issuer li names: the device flow when the issuer
// offers it, else the authorization code flow with PKCE.
func signIn(ctx context.Context, hc *http.Client, li sshca.LoginInfo, browser bool, stderr io.Writer) (string, error) {
	ts, err := signInTokens(ctx, hc, li, signInOptions{mode: preferDevice, browser: browser, again: "gatehouse ssh login"}, stderr)
	if err != nil {
		return "", err
	}
	return ts.AccessToken, nil
}

// signInTokens signs in at the issuer li names with the flow opts asks for and returns
// every token the issuer gave.
func signInTokens(ctx context.Context, hc *http.Client, li sshca.LoginInfo, opts signInOptions, stderr io.Writer) (*tokenSet, error) {
	if err := checkEndpoint("issuer", li.Issuer); err != nil {
		return nil, fmt.Errorf("the gateway names a sign-in issuer sign-in cannot use: %w", err)
	}
	var ep oidcEndpoints
	if err := getJSON(ctx, hc, strings.TrimRight(li.Issuer, "/")+"/.well-known/openid-configuration", &ep); err != nil {
		return nil, fmt.Errorf("discover the issuer %s: %w", printable(li.Issuer), err)
	}
	if strings.TrimRight(ep.Issuer, "/") != strings.TrimRight(li.Issuer, "/") {
		return nil, fmt.Errorf("the discovery document of %s names another issuer, %q", printable(li.Issuer), ep.Issuer)
	}
	if ep.TokenEndpoint == "" {
		return nil, fmt.Errorf("the issuer %s has no token endpoint", printable(li.Issuer))
	}
	for _, e := range []struct{ name, u string }{{"token_endpoint", ep.TokenEndpoint},
		{"authorization_endpoint", ep.AuthorizationEndpoint}, {"device_authorization_endpoint", ep.DeviceAuthorizationEndpoint}} {
		if e.u == "" {
			continue
		}
		if err := checkEndpoint(e.name, e.u); err != nil {
			return nil, fmt.Errorf("discover the issuer %s: %w", printable(li.Issuer), err)
		}
	}
	device := ep.DeviceAuthorizationEndpoint != "" && (opts.mode != preferBrowser || ep.AuthorizationEndpoint == "")
	if opts.mode == deviceOnly && ep.DeviceAuthorizationEndpoint == "" {
		return nil, fmt.Errorf("the issuer %s does not offer the device flow: sign in without --device", printable(li.Issuer))
	}
	var ta *tokenAnswer
	var err error
	switch {
	case device:
		ta, err = deviceSignIn(ctx, hc, ep, li, opts, stderr)
	case ep.AuthorizationEndpoint != "":
		ta, err = browserSignIn(ctx, hc, ep, li, opts, stderr)
	default:
		return nil, fmt.Errorf("the issuer %s offers neither the device flow nor an authorization endpoint: pass a token with --token", printable(li.Issuer))
	}
	if err != nil {
		return nil, err
	}
	return &tokenSet{tokenAnswer: *ta, Issuer: li.Issuer, ClientID: li.ClientID, TokenEndpoint: ep.TokenEndpoint}, nil
}

// deviceSignIn runs the device authorization grant (RFC 8628): it prints the page and the
// code, and polls at the interval the issuer asks for until the person approves, denies,
// or the code expires.
func deviceSignIn(ctx context.Context, hc *http.Client, ep oidcEndpoints, li sshca.LoginInfo, opts signInOptions, stderr io.Writer) (*tokenAnswer, error) {
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
		return nil, fmt.Errorf("start the sign-in at %s: %w", printable(ep.DeviceAuthorizationEndpoint), err)
	}
	if da.Error != "" || da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		if da.Error == "" {
			da.Error = "the answer lacks device_code, user_code or verification_uri"
		}
		return nil, fmt.Errorf("start the sign-in at %s: %w", printable(ep.DeviceAuthorizationEndpoint), da.err())
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
			printable(da.VerificationURIComplete), printable(da.UserCode), printable(da.VerificationURI))
	} else {
		fmt.Fprintf(stderr, "To sign in, open %s in a browser and type the code %s\n", printable(da.VerificationURI), printable(da.UserCode))
	}
	fmt.Fprintf(stderr, "Waiting for the sign-in (the code expires in %s) ...\n", expiresIn)
	expired := fmt.Errorf("the sign-in code expired before it was approved: run %s again", opts.again)
	deadline := time.Now().Add(expiresIn)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			return nil, expired
		}
		var ta tokenAnswer
		code, err := postForm(ctx, hc, ep.TokenEndpoint, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}, "client_id": {li.ClientID}}, &ta)
		if err != nil {
			return nil, fmt.Errorf("poll the token endpoint %s: %w", printable(ep.TokenEndpoint), err)
		}
		switch {
		case code == http.StatusOK && ta.AccessToken != "":
			fmt.Fprintln(stderr, "Signed in.")
			return &ta, nil
		case ta.Error == "authorization_pending":
		case ta.Error == "slow_down":
			interval += 5 * time.Second
		case ta.Error == "expired_token":
			return nil, expired
		case ta.Error == "access_denied":
			return nil, errors.New("the sign-in was denied")
		case ta.Error != "":
			return nil, fmt.Errorf("sign-in failed: %w", ta.err())
		default:
			return nil, fmt.Errorf("the token endpoint %s answered %d without a token", printable(ep.TokenEndpoint), code)
		}
	}
}

// browserSignIn runs the authorization code flow with PKCE (RFC 7636) and a loopback
// redirect (RFC 8252 7.3): the person signs in in a browser, which the issuer sends back
// to http://127.0.0.1:PORT/callback with the code.
func browserSignIn(ctx context.Context, hc *http.Client, ep oidcEndpoints, li sshca.LoginInfo, opts signInOptions, stderr io.Writer) (*tokenAnswer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the sign-in's redirect: %w", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr())
	verifier, state, nonce := randomURLString(32), randomURLString(16), randomURLString(16)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {li.ClientID}, "redirect_uri": {redirect}, "scope": {strings.Join(li.Scopes, " ")},
		"state": {state}, "nonce": {nonce}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
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
			res.err = fmt.Errorf("sign-in failed: %s: %s", printable(v.Get("error")), printable(v.Get("error_description")))
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

	fmt.Fprintf(stderr, "To sign in, open this page in a browser on this machine:\n\n  %s\n\n", printable(authURL))
	if opts.browser {
		openBrowser(authURL)
	}
	fmt.Fprintln(stderr, "Waiting for the sign-in (5 minutes at most) ...")
	var res result
	select {
	case res = <-done:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("no sign-in within 5 minutes: run %s again", opts.again)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, res.err
	}
	var ta tokenAnswer
	code, err := postForm(ctx, hc, ep.TokenEndpoint, url.Values{"grant_type": {"authorization_code"}, "code": {res.code},
		"redirect_uri": {redirect}, "client_id": {li.ClientID}, "code_verifier": {verifier}}, &ta)
	if err != nil {
		return nil, fmt.Errorf("exchange the sign-in code at %s: %w", printable(ep.TokenEndpoint), err)
	}
	if code != http.StatusOK || ta.AccessToken == "" {
		if ta.Error == "" {
			ta.Error = fmt.Sprintf("status %d without a token", code)
		}
		return nil, fmt.Errorf("exchange the sign-in code at %s: %w", printable(ep.TokenEndpoint), ta.err())
	}
	// An ID token must answer this sign-in: one without the nonce sent, or with another,
	// may be replayed from another sign-in.
	if ta.IDToken != "" {
		if n, _ := tokenClaims(ta.IDToken)["nonce"].(string); n != nonce {
			return nil, errors.New("the issuer's ID token does not answer this sign-in (its nonce is missing or differs): refused")
		}
	}
	fmt.Fprintln(stderr, "Signed in.")
	return &ta, nil
}

// tokenClaims reads a JWT's claims without verifying it (the gateway verifies tokens; the
// CLI only shows who signed in and when the token expires). nil when it is not a JWT.
func tokenClaims(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(b, &claims) != nil {
		return nil
	}
	return claims
}

func randomURLString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// openBrowser asks the desktop to open u (an https URL, or http to this machine: the
// caller checked); when it cannot, the printed URL is the way. A variable: tests record.
var openBrowser = func(u string) {
	if secureURL(u) != nil {
		return
	}
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
