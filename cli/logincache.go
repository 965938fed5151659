package cli

// The sign-in `gatehouse login` keeps: the tokens, where they came from and where to renew
// them, in token.json under the user's config directory (mode 0600, directory 0700,
// replaced whole). A token that expires within a minute is renewed with the refresh token
// before it is used; the issuer rotates refresh tokens, so the file is rewritten each time.
// Every change (a renewal, a sign-in, a sign-out) holds token.json.lock (flock), and a
// renewal reads the file again once it holds it: commands run at once (kubectl's credential
// plugin, connect, token --cached) renew once, with the refresh token in force, and the
// others use what it wrote.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// errNotSignedIn is returned when there is no sign-in to use.
var errNotSignedIn = errors.New("not signed in: run `gatehouse login` first")

// loginCache is token.json.
type loginCache struct {
	Server        string    `json:"server"`
	Issuer        string    `json:"issuer"`
	ClientID      string    `json:"client_id"`
	TokenEndpoint string    `json:"token_endpoint"`
	AccessToken   string    `json:"access_token"`
	RefreshToken  string    `json:"refresh_token,omitempty"`
	IDToken       string    `json:"id_token,omitempty"`
	Expiry        time.Time `json:"expiry"`
}

// loginCachePath is $GATEHOUSE_CONFIG_DIR/token.json, else token.json in gatehouse under
// the user's config directory (~/.config, ~/Library/Application Support, %AppData%).
func loginCachePath() (string, error) {
	if d := os.Getenv("GATEHOUSE_CONFIG_DIR"); d != "" {
		return filepath.Join(d, "token.json"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("where to keep the sign-in: %w (set GATEHOUSE_CONFIG_DIR)", err)
	}
	return filepath.Join(d, "gatehouse", "token.json"), nil
}

func readLoginCache(path string) (*loginCache, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotSignedIn
	}
	if err != nil {
		return nil, fmt.Errorf("read the sign-in: %w", err)
	}
	var c loginCache
	if err := json.Unmarshal(b, &c); err != nil || c.AccessToken == "" || c.Server == "" {
		return nil, fmt.Errorf("%s is not a gatehouse sign-in: run `gatehouse login` again", path)
	}
	return &c, nil
}

// writeLoginCache replaces the file whole, readable by its owner only, in a directory
// only its owner can list.
func writeLoginCache(path string, c *loginCache) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keep the sign-in: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("keep the sign-in: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("keep the sign-in: %w", err)
	}
	return nil
}

// update takes the tokens of a sign-in or a renewal. The access token's exp is its
// expiry; expires_in when it has none.
func (c *loginCache) update(ta tokenAnswer, now time.Time) {
	c.AccessToken = ta.AccessToken
	if ta.RefreshToken != "" {
		c.RefreshToken = ta.RefreshToken
	}
	if ta.IDToken != "" {
		c.IDToken = ta.IDToken
	}
	if exp, ok := tokenExpiry(ta.AccessToken); ok {
		c.Expiry = exp
	} else {
		c.Expiry = now.Add(time.Duration(ta.ExpiresIn) * time.Second)
	}
}

// fresh returns an access token with more than tokenMinLife left: the cached one, or one
// renewed with the refresh token (and written back to path). The renewal holds the lock
// and starts from the file as it is then: when another command renewed it meanwhile, its
// token is used as is, and the refresh token it was given is the one spent next.
func (c *loginCache) fresh(ctx context.Context, hc *http.Client, path string, now time.Time) (string, error) {
	if c.Expiry.Sub(now) > tokenMinLife {
		return c.AccessToken, nil
	}
	var tok string
	err := withLoginLock(ctx, path, func() error {
		cur, err := readLoginCache(path)
		if errors.Is(err, errNotSignedIn) {
			return fmt.Errorf("your sign-in to %s was removed (gatehouse logout?): run `gatehouse login --server %s`", c.Server, c.Server)
		}
		if err != nil {
			return err
		}
		if cur.Server != c.Server {
			return fmt.Errorf("the sign-in changed to %s meanwhile (another gatehouse login): run the command again", cur.Server)
		}
		*c = *cur
		if c.Expiry.Sub(time.Now()) > tokenMinLife {
			tok = c.AccessToken
			return nil
		}
		tok, err = c.renew(ctx, hc, path, now)
		return err
	})
	return tok, err
}

// renew spends the refresh token and writes what the issuer gave to path; the caller holds
// the lock.
func (c *loginCache) renew(ctx context.Context, hc *http.Client, path string, now time.Time) (string, error) {
	again := fmt.Sprintf("run `gatehouse login --server %s` again", c.Server)
	if c.RefreshToken == "" || c.TokenEndpoint == "" {
		return "", fmt.Errorf("your sign-in to %s expired at %s and cannot be renewed (the issuer gave no refresh token): %s",
			c.Server, c.Expiry.Local().Format(time.RFC3339), again)
	}
	if err := checkEndpoint("token_endpoint", c.TokenEndpoint); err != nil {
		return "", fmt.Errorf("your sign-in to %s cannot be renewed (%v): %s", c.Server, err, again)
	}
	var ta tokenAnswer
	code, err := postForm(ctx, hc, c.TokenEndpoint, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.RefreshToken},
		"client_id": {c.ClientID}}, &ta)
	switch {
	case err != nil:
		return "", fmt.Errorf("your sign-in to %s expires and could not be renewed (%v): %s", c.Server, err, again)
	case code != http.StatusOK || ta.AccessToken == "":
		if ta.Error == "" {
			ta.Error = fmt.Sprintf("status %d without a token", code)
		}
		return "", fmt.Errorf("your sign-in to %s expires and could not be renewed (%v): %s", c.Server, ta.err(), again)
	}
	c.update(ta, now)
	if err := writeLoginCache(path, c); err != nil {
		return "", err
	}
	return c.AccessToken, nil
}

// loginLockWait bounds the wait for another command's renewal (its token request times
// out after 30 seconds).
const loginLockWait = 45 * time.Second

// withLoginLock runs fn holding path+".lock" exclusively (flock: the kernel drops it when
// its holder exits, so a crashed command leaves no stale lock). It waits at most
// loginLockWait for another command to finish.
func withLoginLock(ctx context.Context, path string, fn func() error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keep the sign-in: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock the sign-in: %w", err)
	}
	defer f.Close()
	deadline := time.Now().Add(loginLockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("lock the sign-in (%s): %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("another gatehouse command has held %s for %s (renewing the sign-in): try again when it is done", f.Name(), loginLockWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	return fn()
}

// wantServer is the gateway a command asks for: --server, else $GATEHOUSE_URL, else "".
func wantServer(flagValue string) string {
	if s := strings.TrimRight(flagValue, "/"); s != "" {
		return s
	}
	return strings.TrimRight(os.Getenv("GATEHOUSE_URL"), "/")
}

// sessionToken is the token a command sends and the gateway it sends it to:
// $GATEHOUSE_TOKEN (to server, else the default gateway), else the sign-in's access token,
// renewed when it expires within a minute, for the gateway signed in to (which must be
// server when one is asked for).
func sessionToken(ctx context.Context, hc *http.Client, server string, now time.Time) (tok, base string, err error) {
	if tok := strings.TrimSpace(os.Getenv("GATEHOUSE_TOKEN")); tok != "" {
		if err := looksLikeToken(tok); err != nil {
			return "", "", usageError{fmt.Sprintf("GATEHOUSE_TOKEN is not a token: %v", err)}
		}
		if server == "" {
			server = apiURL()
		}
		return tok, server, nil
	}
	path, err := loginCachePath()
	if err != nil {
		return "", "", err
	}
	c, err := readLoginCache(path)
	if err != nil {
		return "", "", err
	}
	if server != "" && server != c.Server {
		return "", "", fmt.Errorf("signed in to %s, not %s: run `gatehouse login --server %s`", c.Server, server, server)
	}
	tok, err = c.fresh(ctx, hc, path, now)
	return tok, c.Server, err
}

// whoIs names the person a token is for, and their groups, as the token says.
func whoIs(tok string) (string, []string) {
	claims := tokenClaims(tok)
	name := ""
	for _, k := range []string{"email", "preferred_username", "name", "sub"} {
		if s, ok := claims[k].(string); ok && s != "" {
			name = s
			break
		}
	}
	var groups []string
	switch g := claims["groups"].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				groups = append(groups, s)
			}
		}
	case string:
		groups = strings.Fields(strings.ReplaceAll(g, ",", " "))
	}
	return name, groups
}
