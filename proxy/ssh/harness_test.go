// The test harness: a gateway in front of a real sshd on this machine, real clients, the
// audit trail read back from JetStream.

package ssh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/proxy/session/sessiontest"
	"github.com/gatehouse/gatehouse/proxy/ssh"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localssh"
	"github.com/gatehouse/gatehouse/services/dev/localssh/sshtest"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/sshcert"
)

// engineDecider decides with a policy engine in-process (the NATS hop is tested elsewhere).
type engineDecider struct{ e *policy.Engine }

func (d engineDecider) Decide(_ context.Context, r *schemas.DecisionRequest) schemas.DecisionReply {
	return d.e.Decide(&policy.Input{DecisionRequest: *r}, time.Now())
}

type resources map[string]*config.Resource

func (r resources) Resource(name string) (*config.Resource, bool) { res, ok := r[name]; return res, ok }

// sudoUser is a system account: its name is this package's own (packages test in
// parallel, and services/dev/localssh sets other passwords on its users).
const sudoUser, sudoPassword = "ghtest-px-sudo", "Sudo-pw-7731"

// testPolicies: a few programs, sessions, sftp reads anywhere and writes under /tmp/gh-up;
// forwarding only by a rule (none here); a masked resource; approvals for touch.
var testPolicies = []config.Policy{{Name: "hosts", Resources: []string{"web", "web-ca", "web-pinned-wrong", "web-mask", "web-long", "web-rot"}, Rules: []config.Rule{
	{Name: "programs", Effect: "allow", When: `request.ssh.request == "exec" && request.ssh.programs.all(p, p in ["echo", "id", "cat", "ls", "printf", "sleep", "true", "sh", "head", "seq", "sha256sum", "scp", "rsync", "sudo", "whoami", "exit", "stty"])`},
	{Name: "sessions", Effect: "allow", When: `request.ssh.request in ["pty-req", "shell", "env", "subsystem"]`},
	{Name: "sftp-read", Effect: "allow", When: `request.ssh.request == "sftp" && request.ssh.sftp.op in ["read", "stat", "list", "realpath", "readlink", "close", "other"]`},
	{Name: "sftp-write", Effect: "allow", When: `request.ssh.request == "sftp" && request.ssh.sftp.path.startsWith("/tmp/gh-up/")`},
	{Name: "no-etc", Effect: "deny", When: `request.ssh.request == "exec" && request.ssh.files_written.exists(f, f.startsWith("/etc/"))`, Reason: "nothing under /etc"},
	{Name: "touch-needs-approval", Effect: "require_approval", When: `request.ssh.request == "exec" && request.ssh.programs == ["touch"]`,
		Reason: "touching needs a second person", Approval: &config.Approval{Approvers: []string{"approvers"}, Timeout: 10 * time.Minute}},
}}, {Name: "masking", Resources: []string{"web-mask"}, Rules: []config.Rule{
	{Name: "cards", Effect: "mask", When: `true`, Mask: &config.Mask{Detectors: []string{"card"}}},
}}}

type env struct {
	addr     string
	sshd     *localssh.SSHD
	token    string
	mint     func(identity.TokenRequest) string
	ca       gossh.Signer
	bus      *bus.Bus
	dir      string
	askpass  string // SSH_ASKPASS program printing $GH_TOKEN
	resource map[string]*config.Resource
	rotKey   string // web-rot's key file
}

func logOut() io.Writer {
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func start(t testing.TB) *env {
	t.Helper()
	return startWith(t, testPolicies)
}

// startWith is start with other policies (resources web, web-mask ... as start's).
func startWith(t testing.TB, pols []config.Policy) *env {
	t.Helper()
	sshtest.Require(t)
	log := slog.New(slog.NewTextHandler(logOut(), nil))
	sshd := sshtest.Start(t)
	other := sshtest.Start(t) // another host: its key is not web's
	hostCA := sshtest.Start(t, localssh.HostCA())
	sshtest.AddUser(t, sshd, sudoUser, sudoPassword, true)

	b := bustest.Connect(t)
	pub := sessiontest.Publisher(t, b, log)

	v, mint := sessiontest.Issuer(t, log)

	// A local forwarding to the host's own sshd is allowed on web-fwd, nothing else.
	policies := append(slices.Clone(pols), config.Policy{Name: "forwarding", Resources: []string{"web-fwd"}, Rules: []config.Rule{
		{Name: "to-sshd", Effect: "allow", When: fmt.Sprintf(`request.ssh.channel == "direct-tcpip" && request.ssh.host == "127.0.0.1" && request.ssh.port == %d`, sshd.Port)},
	}})
	eng, err := policy.Compile(policies, 1)
	require.NoError(t, err)
	// A key file the test rotates.
	rotKey := filepath.Join(t.TempDir(), "rot.key")
	pemBytes, err := os.ReadFile(sshd.ClientKeyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(rotKey, pemBytes, 0o600))

	backend := func(s *localssh.SSHD, pin string) *config.SSHBackend {
		b := &config.SSHBackend{Address: s.Addr(), Logins: []string{"root", sudoUser}, KeyFile: sshd.ClientKeyFile, HostKey: pin, ConnectTimeout: 10 * time.Second}
		return b
	}
	res := resources{
		"web":              {Name: "web", Type: "ssh", Audit: "strict", Labels: map[string]string{"env": "test"}, SSH: backend(sshd, sshd.HostKeyLine())},
		"web-pinned-wrong": {Name: "web-pinned-wrong", Type: "ssh", Audit: "buffered", SSH: backend(sshd, other.HostKeyLine())},
		"web-ca":           {Name: "web-ca", Type: "ssh", Audit: "buffered", SSH: &config.SSHBackend{Address: hostCA.Addr(), Logins: []string{"root"}, KeyFile: hostCA.ClientKeyFile, HostCA: string(gossh.MarshalAuthorizedKey(hostCA.HostCAKey)), ConnectTimeout: 10 * time.Second}},
		"web-mask":         {Name: "web-mask", Type: "ssh", Audit: "buffered", SSH: backend(sshd, sshd.HostKeyLine())},
		"web-long":         {Name: "web-long", Type: "ssh", Audit: "buffered", TokenExpiry: "continue", MaxSessionLifetime: time.Hour, SSH: backend(sshd, sshd.HostKeyLine())},
		"web-fwd":          {Name: "web-fwd", Type: "ssh", Audit: "buffered", SSH: backend(sshd, sshd.HostKeyLine())},
		"web-rot": {Name: "web-rot", Type: "ssh", Audit: "buffered", SSH: &config.SSHBackend{Address: sshd.Addr(), Logins: []string{"root"}, KeyFile: rotKey,
			HostKey: sshd.HostKeyLine(), ConnectTimeout: 10 * time.Second}},
	}
	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ca, err := gossh.NewSignerFromKey(caKey)
	require.NoError(t, err)
	_, hk, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := gossh.NewSignerFromKey(hk)
	require.NoError(t, err)

	srv := ssh.New(ssh.Config{Listen: "127.0.0.1:0", HostKeys: []gossh.Signer{hostKey}, UserCAs: []gossh.PublicKey{ca.PublicKey()},
		AuthTimeout: 5 * time.Second, MaxConnections: 200, MaxUnauthenticated: 20, MaxChannels: 8, MaxRecordedBytes: 1 << 20,
		Limits: session.Limits{ResultChunkBytes: 64 << 10, MaxResultBytes: 1 << 20, MaxSQLBytes: 64 << 10}},
		res, v, pub, engineDecider{eng}, prometheus.NewRegistry(), log)
	srv.SetApprovals(&session.Approvals{JS: b.JS, NC: b.NC, Hint: "approve with:", Log: log})
	require.NoError(t, srv.Sessions().Follow(t.Context(), b.JS))
	require.NoError(t, srv.Listen())
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx); close(done) }()
	t.Cleanup(func() {
		stop()
		_ = srv.Shutdown(context.Background())
		<-done
	})

	dir := t.TempDir()
	// The gateway's host key, pinned for the clients.
	_, port, _ := net.SplitHostPort(srv.Addr())
	known := fmt.Sprintf("[127.0.0.1]:%s %s", port, gossh.MarshalAuthorizedKey(hostKey.PublicKey()))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(known), 0o600))
	askpass := filepath.Join(dir, "askpass")
	require.NoError(t, os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$GH_TOKEN\"\n"), 0o700))
	tok := mint(identity.TokenRequest{Subject: "deployer", Groups: []string{"ops"}, Name: "deployer@example.com"})
	require.Less(t, len(tok), 1023, "the dev token must fit OpenSSH's password buffer")
	return &env{addr: srv.Addr(), sshd: sshd, token: tok, mint: mint, ca: ca, bus: b, dir: dir, askpass: askpass, resource: res, rotKey: rotKey}
}

// sshArgs are the real ssh client's options for the gateway, authenticating with the token.
func (e *env) sshArgs(extra ...string) []string {
	_, port, _ := net.SplitHostPort(e.addr)
	args := []string{"-p", port, "-o", "UserKnownHostsFile=" + filepath.Join(e.dir, "known_hosts"), "-o", "StrictHostKeyChecking=yes",
		"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1",
		"-o", "ConnectTimeout=20", "-F", "/dev/null"}
	return append(args, extra...)
}

// ssh runs the real ssh client with the token (through SSH_ASKPASS, as scripts do).
func (e *env) ssh(t *testing.T, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(e.sshArgs(), args...)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+e.askpass, "SSH_ASKPASS_REQUIRE=force", "GH_TOKEN="+token, "DISPLAY=")
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &o, &er, strings.NewReader("")
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return o.String(), er.String(), code
}

// dial connects with x/crypto's client and the token as the password.
func (e *env) dial(t *testing.T, user, token string) (*gossh.Client, error) {
	t.Helper()
	return gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: user, Auth: []gossh.AuthMethod{gossh.Password(token)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second})
}

// events reads the audit trail of a resource until cond holds of it.
func (e *env) events(t *testing.T, resource string, cond func([]schemas.Event) bool) []schemas.Event {
	t.Helper()
	return sessiontest.Events(t, e.bus, resource, cond)
}

// ofType returns the payloads of the events of type typ.
func ofType[T any](t *testing.T, evs []schemas.Event, typ string) []T {
	t.Helper()
	return sessiontest.OfType[T](t, evs, typ)
}

// sessionEnded reports whether n sessions have ended in evs.
func sessionsEnded(n int) func([]schemas.Event) bool {
	return func(evs []schemas.Event) bool {
		c := 0
		for _, ev := range evs {
			if ev.Type == schemas.TypeSessionEnd {
				c++
			}
		}
		return c >= n
	}
}

// certKey makes a key and a certificate the gateway's CA signed for id, valid until
// notAfter, and returns the key file (the certificate is next to it, -cert.pub).
func (e *env) certKey(t testing.TB, id schemas.Identity, notAfter time.Time) (keyFile string, signer gossh.Signer) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err = gossh.NewSignerFromKey(key)
	require.NoError(t, err)
	block, err := gossh.MarshalPrivateKey(key, "")
	require.NoError(t, err)
	keyFile = filepath.Join(t.TempDir(), "id_ed25519")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600))
	cert, err := sshcert.Sign(e.ca, signer.PublicKey(), id, notAfter, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile+"-cert.pub", gossh.MarshalAuthorizedKey(cert), 0o600))
	return keyFile, signer
}

// certArgs are ssh (and sftp, scp) options that log in with the certificate of keyFile.
func (e *env) certArgs(keyFile string) []string {
	return []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + filepath.Join(e.dir, "known_hosts"),
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", keyFile,
		"-o", "CertificateFile=" + keyFile + "-cert.pub"}
}

// run runs a client program, returning its output and exit code.
func run(t testing.TB, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return o.String(), er.String(), code
}

var ada = schemas.Identity{Subject: "ada", Name: "ada@example.com", Issuer: "https://idp.example", Groups: []string{"ops"}, Kind: "human"}

// terminal is a client program on a pseudo-terminal, as a person runs it.
type terminal struct {
	t    *testing.T
	f    *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen bytes.Buffer
	done chan struct{}
}

func startTerminal(t *testing.T, name string, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(name, args...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 30})
	require.NoError(t, err)
	term := &terminal{t: t, f: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			term.mu.Lock()
			term.seen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
	})
	return term
}

// expect waits until the terminal has shown s (after from), and returns where it ends.
func (term *terminal) expect(from int, s string) int {
	term.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		term.mu.Lock()
		out := term.seen.String()
		term.mu.Unlock()
		if from <= len(out) {
			if i := strings.Index(out[from:], s); i >= 0 {
				return from + i + len(s)
			}
		}
		select {
		case <-term.done:
			term.t.Fatalf("the terminal ended before showing %q; it showed:\n%s", s, out)
		default:
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal never showed %q; it showed:\n%s", s, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (term *terminal) typeText(s string) {
	_, err := term.f.Write([]byte(s))
	require.NoError(term.t, err)
}
