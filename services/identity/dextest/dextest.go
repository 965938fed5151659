// Package dextest runs Dex (github.com/dexidp/dex), an OpenID Connect provider the
// project did not write, for tests: built once from the Go module proxy into the user's
// cache directory and reused, started on a free loopback port in a temp dir, stopped at
// the end of the test.
//
// Dex's go.mod replaces its api/v2 module with a directory that the module zip leaves out,
// so `go install github.com/dexidp/dex/cmd/dex@VERSION` refuses it; the source is
// downloaded with `go mod download`, that replace is swapped for the published api/v2
// module, and cmd/dex is built from the copy. GATEHOUSE_DEX names a dex binary to use
// instead.
package dextest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the Dex source built: v2.41.1 (Dex tags v2 releases without a /v2 module
// path, so the Go module proxy knows them by pseudo-version), with APIVersion of its api/v2
// module.
const (
	Version    = "v0.0.0-20240807174518-43956db7fd75"
	APIVersion = "v2.2.0"
	module     = "github.com/dexidp/dex"
)

// Client IDs and secrets of the clients every Dex started here knows. Gateway trusts
// CLI as a peer: CLI may ask for a token whose audience is Gateway (scope
// audience:server:client_id:gatehouse), as Dex's cross-client trust allows.
const (
	Gateway       = "gatehouse"
	GatewaySecret = "gatehouse-secret"
	CLI           = "gatehouse-cli"
	CLISecret     = "gatehouse-cli-secret"
)

// User is a person in Dex's password database.
type User struct {
	Email, Username, Password, UserID string
	hash                              string
}

// Users are the people every Dex started here knows (bcrypt hashes of their passwords,
// cost 10, made once: Dex refuses other costs).
var Users = []User{
	{Email: "alice@example.com", Username: "alice", Password: "alice-password", UserID: "0f9e7cc2-6f5c-4b5e-9a53-0d4a8b1d6c11",
		hash: "$2a$10$A3v19gUeqOIlyckTcvvrT.wEFDPnyeZWfH6r13.hhvdeOHACtoAi2"},
	{Email: "bob@example.com", Username: "bob", Password: "bob-password", UserID: "5a1d3c8e-2b7f-4e90-8c41-7e2f9b6d0a35",
		hash: "$2a$10$2XtLoQXB5TDJgFXLwQsjiua4ZbWfgwkPujMdLwulVEimihSUU3TWu"},
}

// Dex is a running Dex.
type Dex struct {
	// Issuer is its issuer URL (http://127.0.0.1:PORT/dex).
	Issuer string
	log    *syncBuffer
}

// Binary returns the path of a dex binary, building it on first use (minutes, once per
// machine). It skips the test, saying why, only where Dex cannot be built here: the Go
// module proxy is unreachable or there is no C compiler (Dex's SQLite storage needs cgo).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_DEX"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("dex: no cache directory (set XDG_CACHE_HOME or HOME): %v", err)
	}
	dir := filepath.Join(cache, "gatehouse", "dex-"+Version)
	bin := filepath.Join(dir, "dex")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("dex: %v", err)
	}
	// One build at a time on this machine (go test runs packages in parallel processes).
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("dex: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("dex: lock %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin // another process built it meanwhile
	}
	t.Logf("building Dex %s into %s (once per machine; takes a few minutes)", Version, dir)
	if err := build(t, bin); err != nil {
		var skip skipError
		if errors.As(err, &skip) {
			t.Skipf("Dex cannot be built on this machine, so the test against it is skipped: %v", err)
		}
		t.Fatalf("build Dex %s: %v", Version, err)
	}
	return bin
}

type skipError struct{ error }

func build(t testing.TB, bin string) error {
	work := t.TempDir()
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
	run := func(dir string, args ...string) ([]byte, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = dir, env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return out.Bytes(), fmt.Errorf("go %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
		}
		return out.Bytes(), nil
	}
	out, err := run(work, "mod", "download", "-json", module+"@"+Version)
	var dl struct{ Dir, Error string }
	_ = json.Unmarshal(out, &dl)
	if err != nil || dl.Dir == "" {
		return skipError{fmt.Errorf("download %s@%s from the Go module proxy: %s %v", module, Version, dl.Error, err)}
	}
	src := filepath.Join(work, "dex")
	if err := os.CopyFS(src, os.DirFS(dl.Dir)); err != nil {
		return err
	}
	if _, err := run(src, "mod", "edit", "-dropreplace="+module+"/api/v2", "-require="+module+"/api/v2@"+APIVersion); err != nil {
		return err
	}
	if _, err := exec.LookPath("cc"); err != nil {
		if _, err := exec.LookPath("gcc"); err != nil {
			return skipError{errors.New("no C compiler (cc or gcc): Dex's SQLite storage needs cgo")}
		}
	}
	tmp := bin + ".partial"
	if _, err := run(src, "build", "-o", tmp, "./cmd/dex"); err != nil {
		if strings.Contains(err.Error(), "dial tcp") || strings.Contains(err.Error(), "proxy.golang.org") {
			return skipError{err}
		}
		return err
	}
	return os.Rename(tmp, bin)
}

// Options change the Dex that Start runs.
type Options struct {
	// IDTokenTTL is how long its tokens live (Dex's expiry.idTokens; default 1h).
	IDTokenTTL time.Duration
}

// Start runs Dex with an in-memory store, the password grant on its password database
// (Users), and the clients Gateway and CLI.
func Start(t testing.TB, opts Options) *Dex {
	t.Helper()
	bin := Binary(t)
	if opts.IDTokenTTL == 0 {
		opts.IDTokenTTL = time.Hour
	}
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("dex: free port: %v", err)
		}
		d, err := start(t, bin, dir, port, opts)
		if err == nil {
			return d
		}
		lastErr = err // most likely the port was taken between the probe and Dex's listen
	}
	t.Fatalf("dex did not start: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, dir string, port int, opts Options) (*Dex, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	d := &Dex{Issuer: "http://" + addr + "/dex", log: &syncBuffer{}}
	var users strings.Builder
	for _, u := range Users {
		fmt.Fprintf(&users, "  - {email: %q, hash: %q, username: %q, userID: %q}\n", u.Email, u.hash, u.Username, u.UserID)
	}
	cfg := fmt.Sprintf(`issuer: %[1]s
storage:
  type: memory
web:
  http: %[2]s
logger:
  level: debug
expiry:
  idTokens: %[3]s
oauth2:
  passwordConnector: local
  skipApprovalScreen: true
enablePasswordDB: true
staticClients:
  - {id: %[4]s, name: Gatehouse, secret: %[5]s, trustedPeers: [%[6]s], redirectURIs: ["http://127.0.0.1:1/callback"]}
  - {id: %[6]s, name: Gatehouse CLI, secret: %[7]s, redirectURIs: ["http://127.0.0.1:1/callback"]}
staticPasswords:
%[8]s`, d.Issuer, addr, opts.IDTokenTTL, Gateway, GatewaySecret, CLI, CLISecret, users.String())
	path := filepath.Join(dir, "dex.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	// Ready when it serves its discovery document; gone if it exits first.
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(d.Issuer + "/.well-known/openid-configuration")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("dex exited:\n%s", d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("dex did not serve discovery within 30s:\n%s", d.log.String())
		}
		// Polling for readiness; Dex has no other way to say it is up.
		select {
		case <-exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("--- dex output:\n%s", d.log.String())
		}
	})
	return d, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Tokens is Dex's answer to a token request.
type Tokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	ExpiresIn   int    `json:"expires_in"`
}

// PasswordGrant asks Dex for tokens with the OAuth 2.0 password grant, as client (with its
// secret) for user, with the scopes (openid is added).
func (d *Dex) PasswordGrant(ctx context.Context, client, secret string, user User, scopes ...string) (*Tokens, error) {
	form := url.Values{"grant_type": {"password"}, "username": {user.Email}, "password": {user.Password},
		"scope": {strings.Join(append([]string{"openid"}, scopes...), " ")}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("dex token endpoint: %s: %s", resp.Status, body)
	}
	var tok Tokens
	if err := json.Unmarshal(body, &tok); err != nil {
		return nil, fmt.Errorf("dex token endpoint: %w", err)
	}
	return &tok, nil
}

// Log is what Dex printed so far.
func (d *Dex) Log() string { return d.log.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
