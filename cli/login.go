package cli

// `gatehouse login` signs a person in at the gateway's issuer (a browser on this machine
// with PKCE when the issuer has an authorization endpoint, else or with --device the
// device flow) and keeps the tokens (logincache.go); `gatehouse logout` forgets them;
// `gatehouse token --cached` prints the access token for scripts. Tokens are never
// printed otherwise.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"
)

func loginCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("login", stdout)
	server := fs.String("server", "", "Gatehouse HTTP address (default: $GATEHOUSE_URL, else http://127.0.0.1:8080)")
	device := fs.Bool("device", false, "sign in with the device flow (a code to type on any device's browser) even when the issuer offers the browser flow")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser: only print the sign-in URL (the device flow never opens one)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	base := wantServer(*server)
	if base == "" {
		base = apiURL()
	}
	if err := checkLoginServer(base); err != nil {
		return err
	}
	path, err := loginCachePath()
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	li, err := (&kubeSession{base: base, hc: hc}).loginInfo(ctx)
	if err != nil {
		return err
	}
	opts := signInOptions{mode: preferBrowser, browser: !*noBrowser, again: "gatehouse login"}
	if *device {
		opts.mode = deviceOnly
	}
	ts, err := signInTokens(ctx, hc, li, opts, stderr)
	if err != nil {
		return err
	}
	c := &loginCache{Server: base, Issuer: ts.Issuer, ClientID: ts.ClientID, TokenEndpoint: ts.TokenEndpoint}
	c.update(ts.tokenAnswer, time.Now())
	// Under the lock: a renewal under way must not write the previous sign-in over this one.
	if err := withLoginLock(ctx, path, func() error { return writeLoginCache(path, c) }); err != nil {
		return err
	}
	name, groups := whoIs(c.AccessToken)
	g := "no groups"
	if len(groups) > 0 {
		g = "groups: " + strings.Join(groups, ", ")
	}
	fmt.Fprintf(stdout, "Signed in to %s as %s (%s).\n", base, printable(name), printable(g))
	renew := "then it is renewed with the refresh token"
	if c.RefreshToken == "" {
		renew = "then run gatehouse login again (the issuer gave no refresh token)"
	}
	fmt.Fprintf(stdout, "The token expires at %s; %s. Kept in %s.\n", c.Expiry.Local().Format(time.RFC3339), renew, path)
	return nil
}

func logoutCmd(args []string, stdout, _ io.Writer) error {
	flags := newFlags("logout", stdout)
	server := flags.String("server", "", "forget the sign-in only when it is for this Gatehouse address (default: whichever gateway you signed in to)")
	if err := parseNoArgs(flags, args); err != nil {
		return err
	}
	path, err := loginCachePath()
	if err != nil {
		return err
	}
	c, err := readLoginCache(path)
	if errors.Is(err, errNotSignedIn) {
		fmt.Fprintln(stdout, "Not signed in.")
		return nil
	}
	if want := strings.TrimRight(*server, "/"); err == nil && want != "" && want != c.Server {
		return fmt.Errorf("signed in to %s, not %s: nothing removed", c.Server, want)
	}
	// Under the lock: a renewal under way must not write the sign-in back.
	ctx, cancel := signalContext()
	defer cancel()
	err = withLoginLock(ctx, path, func() error {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sign out: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c != nil {
		fmt.Fprintf(stdout, "Signed out of %s (removed %s).\n", c.Server, path)
	} else {
		fmt.Fprintf(stdout, "Signed out (removed %s).\n", path)
	}
	return nil
}

// cachedTokenCmd is `gatehouse token --cached`: the sign-in's access token, renewed when
// it expires within a minute.
func cachedTokenCmd(server string, stdout io.Writer) error {
	ctx, cancel := signalContext()
	defer cancel()
	path, err := loginCachePath()
	if err != nil {
		return err
	}
	c, err := readLoginCache(path)
	if err != nil {
		return err
	}
	if server != "" && server != c.Server {
		return fmt.Errorf("signed in to %s, not %s: run `gatehouse login --server %s`", c.Server, server, server)
	}
	tok, err := c.fresh(ctx, &http.Client{Timeout: 30 * time.Second}, path, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
