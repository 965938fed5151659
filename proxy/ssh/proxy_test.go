package ssh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/sshcert"
)

func TestExecWithToken(t *testing.T) {
	e := start(t)
	out, errOut, code := e.ssh(t, e.token, "web+root@127.0.0.1", "echo", "hello from $(whoami)")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "hello from root\n", out)

	// The resource alone: its first login.
	out, errOut, code = e.ssh(t, e.token, "web@127.0.0.1", "id -un")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "root\n", out)

	// Another login the resource allows.
	out, errOut, code = e.ssh(t, e.token, "web+"+sudoUser+"@127.0.0.1", "whoami")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, sudoUser+"\n", out)

	// Exit statuses come back.
	_, _, code = e.ssh(t, e.token, "web+root@127.0.0.1", "sh -c 'exit 7'")
	require.Equal(t, 7, code)

	evs := e.events(t, "web", sessionsEnded(4))
	starts := ofType[schemas.SessionStart](t, evs, schemas.TypeSessionStart)
	require.Len(t, starts, 4)
	require.Equal(t, "ssh", starts[0].Protocol)
	require.Equal(t, "token", starts[0].AuthMethod)
	require.Equal(t, "root", starts[0].Login)
	reqs := ofType[schemas.SshRequest](t, evs, schemas.TypeSshRequest)
	var cmds []string
	for _, r := range reqs {
		if r.Request == "exec" {
			cmds = append(cmds, r.Command)
		}
	}
	require.Contains(t, cmds, "echo hello from $(whoami)")
	exits := ofType[schemas.SshExit](t, evs, schemas.TypeSshExit)
	var statuses []uint32
	for _, x := range exits {
		statuses = append(statuses, x.ExitStatus)
	}
	require.Contains(t, statuses, uint32(7))
	ios := ofType[schemas.SshIo](t, evs, schemas.TypeSshIo)
	var seen strings.Builder
	for _, io := range ios {
		for _, f := range io.Frames {
			if f.Code == "o" {
				seen.WriteString(f.Data)
			}
		}
	}
	require.Contains(t, seen.String(), "hello from root\n")
	for _, ev := range evs {
		require.NotContains(t, string(ev.Payload), e.token, "the token is never recorded")
	}
}

func TestCommandsDecidedAsTheShellSeesThem(t *testing.T) {
	e := start(t)
	for _, cmd := range []string{
		"echo hi; rm -rf /tmp/gh-nothing",
		"echo hi && sh -c 'touch /tmp/gh-x'",
		"echo $(touch /tmp/gh-x)",
		"'r''m' -rf /tmp/gh-x",
		"echo x > /etc/gh-test",
		"sudo -u root touch /tmp/gh-x",
	} {
		_, errOut, code := e.ssh(t, e.token, "web+root@127.0.0.1", cmd)
		require.Equal(t, 126, code, cmd)
		require.Contains(t, errOut, "gatehouse: exec denied", cmd)
	}
	_, err := os.Stat("/tmp/gh-x")
	require.True(t, os.IsNotExist(err), "a denied command ran")
	_, err = os.Stat("/etc/gh-test")
	require.True(t, os.IsNotExist(err), "a denied command ran")
}

func TestAuthenticationRefusals(t *testing.T) {
	e := start(t)
	for name, tc := range map[string]struct{ user, token, want, check string }{
		"bad token":         {"web+root", "not-a-token", "gatehouse:", identity.CheckFormat},
		"unknown resource":  {"nope+root", e.token, `"nope" is not an SSH resource`, "resource"},
		"login not allowed": {"web+nobody", e.token, `has no login "nobody"`, "resource"},
		"host key mismatch": {"web-pinned-wrong+root", e.token, "not the one pinned", "backend"},
		"expired token":     {"web+root", e.mint(identity.TokenRequest{Subject: "late", TTL: time.Nanosecond}), "gatehouse:", "expiry"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := e.ssh(t, tc.token, tc.user+"@127.0.0.1", "true")
			require.Equal(t, 255, code)
			require.Contains(t, errOut, tc.want)
		})
	}
	evs := e.events(t, "web-pinned-wrong", func(evs []schemas.Event) bool { return len(evs) > 0 })
	fails := ofType[schemas.AuthFailed](t, evs, schemas.TypeAuthFailed)
	require.NotEmpty(t, fails)
	require.Equal(t, "backend", fails[0].Check)
	require.Equal(t, "ssh", fails[0].Protocol)

	// A host whose certificate the pinned CA signed is accepted.
	out, errOut, code := e.ssh(t, e.token, "web-ca+root@127.0.0.1", "echo", "via-ca")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "via-ca\n", out)
}

func TestCertificateLogin(t *testing.T) {
	e := start(t)
	id := ada
	keyFile, signer := e.certKey(t, id, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	run := func() (string, string, int) {
		return run(t, "ssh", append(append([]string{"-p", port}, e.certArgs(keyFile)...), "web+root@127.0.0.1", "echo", "cert-ok")...)
	}
	out, errOut, code := run()
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "cert-ok\n", out)
	evs := e.events(t, "web", sessionsEnded(1))
	starts := ofType[schemas.SessionStart](t, evs, schemas.TypeSessionStart)
	require.Equal(t, "certificate", starts[0].AuthMethod)
	require.Equal(t, "ada", evs[0].Identity.Subject)

	// A certificate another CA signed is refused.
	other, err := gossh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	require.NoError(t, err)
	cert, err := sshcert.Sign(other, signer.PublicKey(), id, time.Now().Add(time.Hour), time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile+"-cert.pub", gossh.MarshalAuthorizedKey(cert), 0o600))
	_, errOut, code = run()
	require.Equal(t, 255, code)
	require.Contains(t, errOut, "not signed by this gateway's CA")
}

func TestForwardingRefusedUnlessAllowed(t *testing.T) {
	e := start(t)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Dial("tcp", e.sshd.Addr())
	require.Error(t, err)
	require.Contains(t, err.Error(), "port forwarding denied")
	_, err = c.Listen("tcp", "127.0.0.1:0")
	require.Error(t, err, "a remote forwarding was allowed without a rule")
	s, err := c.NewSession()
	require.NoError(t, err)
	ok, err := s.SendRequest("x11-req", true, gossh.Marshal(struct {
		Single        bool
		Proto, Cookie string
		Screen        uint32
	}{false, "MIT-MAGIC-COOKIE-1", "00", 0}))
	require.NoError(t, err)
	require.False(t, ok, "X11 forwarding was allowed")
	ok, err = s.SendRequest("auth-agent-req@openssh.com", true, nil)
	require.NoError(t, err)
	require.False(t, ok, "agent forwarding was allowed without a rule")
	s.Close()

	// The channel limit holds.
	var open []gossh.Session
	var last error
	for i := 0; i < 12; i++ {
		s, err := c.NewSession()
		if err != nil {
			last = err
			break
		}
		open = append(open, *s)
	}
	require.Error(t, last)
	require.Contains(t, last.Error(), "at most 8 channels")
}

func TestMaskingExecOutput(t *testing.T) {
	e := start(t)
	// The card number is written in two halves with a pause between them: the halves must
	// still be found as one value.
	out, errOut, code := e.ssh(t, e.token, "web-mask+root@127.0.0.1", "a=41; b=55; printf \"${a}11 1111\"; sleep 0.3; printf ' 1111 1111 done\\n'; printf \"to stderr ${b}00 0000 0000 0004\\n\" >&2")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "4111")
	require.Contains(t, out, "done")
	require.NotContains(t, errOut, "5500 0000")
	evs := e.events(t, "web-mask", sessionsEnded(1))
	for _, ev := range evs {
		require.NotContains(t, string(ev.Payload), "1111 1111 1111", ev.Type)
		require.NotContains(t, string(ev.Payload), "5500 0000 0000", ev.Type)
	}
	ios := ofType[schemas.SshIo](t, evs, schemas.TypeSshIo)
	require.NotEmpty(t, ios)
	masked := uint64(0)
	for _, io := range ios {
		for _, m := range io.Masked {
			masked += m.Count
		}
	}
	require.Equal(t, uint64(2), masked)
}

func TestBadInputIsBounded(t *testing.T) {
	e := start(t)
	// Garbage instead of an SSH version line, and a client that never finishes the key
	// exchange: closed (the latter within the auth timeout).
	c, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	_, _ = c.Write(bytes.Repeat([]byte{0xff}, 70000))
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadAll(c)
	if err != nil { // reset: the server closed with the garbage unread
		require.Contains(t, err.Error(), "reset", "the connection should end, not time out")
	}
	c.Close()

	idle, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	_ = idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(idle) // the server's version line, then EOF at the auth timeout
	require.NoError(t, err, "a client that never finishes the key exchange must be cut off")
	idle.Close()

	// A thousand half-open connections: past the limit they are turned away at once, and once
	// they are gone a real client gets in.
	var conns []net.Conn
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	refused := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err == io.EOF {
			refused++
		}
	}
	require.GreaterOrEqual(t, refused, 1000-20, "connections past the limit of 20 unauthenticated were not refused")
	for _, c := range conns {
		c.Close()
	}
	require.Eventually(t, func() bool {
		out, _, code := e.ssh(t, e.token, "web+root@127.0.0.1", "echo back")
		return code == 0 && out == "back\n"
	}, 30*time.Second, 200*time.Millisecond)
}

func TestRevocationEndsALiveSession(t *testing.T) {
	e := start(t)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	s, err := c.NewSession()
	require.NoError(t, err)
	var stderr bytes.Buffer
	s.Stderr = &stderr
	out, err := s.StdoutPipe()
	require.NoError(t, err)
	in, err := s.StdinPipe()
	require.NoError(t, err)
	// A shell on a terminal, as a person has it.
	require.NoError(t, s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}))
	require.NoError(t, s.Shell())
	_, err = io.WriteString(in, "echo STAR''TED\r")
	require.NoError(t, err)
	var seen []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(seen, []byte("STARTED")) {
		n, err := out.Read(buf)
		require.NoError(t, err)
		seen = append(seen, buf[:n]...)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	require.NoError(t, bus.PublishRevocation(context.Background(), e.bus.JS, schemas.RevocationState{Kind: schemas.RevokeKindIdentity,
		Value: "deployer", Reason: "left the team", By: "admin", At: time.Now()}, schemas.Identity{Subject: "admin"}))
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked session is still running")
	}
	require.Contains(t, stderr.String(), "access revoked by admin")
	evs := e.events(t, "web", sessionsEnded(1))
	ends := ofType[schemas.SessionEnd](t, evs, schemas.TypeSessionEnd)
	require.Equal(t, "revoked", ends[0].Reason)
	terms := ofType[schemas.SessionTerminated](t, evs, schemas.TypeSessionTerminated)
	require.Len(t, terms, 1)

	// And the revoked identity cannot come back.
	_, errOut, code := e.ssh(t, e.token, "web+root@127.0.0.1", "true")
	require.Equal(t, 255, code)
	require.Contains(t, errOut, "revoked")
}

var _ = strconv.Itoa

// TestFiles: sftp, scp and rsync through the gateway, with sftp operations decided path by
// path and every file's content hashed.
func TestFiles(t *testing.T) {
	e := start(t)
	keyFile, _ := e.certKey(t, ada, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	up := filepath.Join("/tmp/gh-up", strconv.FormatInt(time.Now().UnixNano(), 36))
	require.NoError(t, os.MkdirAll(up, 0o755))
	t.Cleanup(func() { os.RemoveAll(up) })
	local := t.TempDir()
	src := filepath.Join(local, "src.bin")
	content := make([]byte, 300<<10+17)
	_, _ = rand.Read(content)
	require.NoError(t, os.WriteFile(src, content, 0o600))
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])

	batch := filepath.Join(local, "batch")
	require.NoError(t, os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s/a.bin\nget %s/a.bin %s/dl.bin\n-put %s /etc/gh-denied.bin\nls %s\nrename %s/a.bin %s/b.bin\n",
		src, up, up, local, src, up, up, up)), 0o600))
	out, errOut, code := run(t, "sftp", append(append([]string{"-P", port, "-b", batch}, e.certArgs(keyFile)...), "web+root@127.0.0.1")...)
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, errOut, "denied", "the refused put says why")
	got, err := os.ReadFile(filepath.Join(up, "b.bin"))
	require.NoError(t, err)
	require.Equal(t, content, got)
	dl, err := os.ReadFile(filepath.Join(local, "dl.bin"))
	require.NoError(t, err)
	require.Equal(t, content, dl)
	_, err = os.Stat("/etc/gh-denied.bin")
	require.True(t, os.IsNotExist(err), "a refused sftp write reached the host")

	// scp (the sftp protocol, OpenSSH's default) and rsync over ssh.
	_, errOut, code = run(t, "scp", append(append([]string{"-P", port}, e.certArgs(keyFile)...), src, "web+root@127.0.0.1:"+up+"/c.bin")...)
	require.Equal(t, 0, code, errOut)
	// The classic scp protocol (scp -O): each file decided by its path, hashed both ways.
	_, errOut, code = run(t, "scp", append(append([]string{"-O", "-P", port}, e.certArgs(keyFile)...), src, "web+root@127.0.0.1:"+up+"/e.bin")...)
	require.Equal(t, 0, code, errOut)
	_, errOut, code = run(t, "scp", append(append([]string{"-O", "-P", port}, e.certArgs(keyFile)...), src, "web+root@127.0.0.1:/etc/gh-denied-scp.bin")...)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "denied")
	_, err = os.Stat("/etc/gh-denied-scp.bin")
	require.True(t, os.IsNotExist(err), "a refused scp upload reached the host")
	_, errOut, code = run(t, "scp", append(append([]string{"-O", "-P", port}, e.certArgs(keyFile)...), "web+root@127.0.0.1:"+up+"/e.bin", filepath.Join(local, "e.bin"))...)
	require.Equal(t, 0, code, errOut)
	got, err = os.ReadFile(filepath.Join(local, "e.bin"))
	require.NoError(t, err)
	require.Equal(t, content, got)
	sshCmd := "ssh -p " + port + " " + strings.Join(e.certArgs(keyFile), " ")
	_, errOut, code = run(t, "rsync", "-e", sshCmd, src, "web+root@127.0.0.1:"+up+"/d.bin")
	require.Equal(t, 0, code, errOut)
	for _, f := range []string{"c.bin", "d.bin"} {
		got, err := os.ReadFile(filepath.Join(up, f))
		require.NoError(t, err)
		require.Equal(t, content, got, f)
	}

	evs := e.events(t, "web", sessionsEnded(6))
	files := ofType[schemas.SshFile](t, evs, schemas.TypeSshFile)
	var viaSCP []schemas.SshFile
	for _, f := range files {
		if f.Via == "scp" {
			viaSCP = append(viaSCP, f)
		}
	}
	require.Len(t, viaSCP, 2, "%+v", viaSCP)
	for _, f := range viaSCP {
		require.Contains(t, []string{f.Path, f.AltPath}, up+"/e.bin")
		require.Equal(t, want, f.Sha256)
		require.True(t, f.Complete)
	}
	require.ElementsMatch(t, []string{"upload", "download"}, []string{viaSCP[0].Direction, viaSCP[1].Direction})
	var uploads, downloads []schemas.SshFile
	for _, f := range files {
		if f.Direction == "upload" {
			uploads = append(uploads, f)
		} else {
			downloads = append(downloads, f)
		}
	}
	require.Len(t, downloads, 2)
	for _, d := range downloads {
		require.Equal(t, want, d.Sha256)
		require.True(t, d.Complete && d.Sequential)
	}
	paths := map[string]schemas.SshFile{}
	for _, f := range uploads {
		paths[f.Path] = f
	}
	for _, p := range []string{up + "/a.bin", up + "/c.bin"} {
		f, ok := paths[p]
		require.True(t, ok, "no ssh.file for %s: %+v", p, uploads)
		require.Equal(t, want, f.Sha256, p)
		require.Equal(t, uint64(len(content)), f.Size)
		require.True(t, f.Complete && f.Sequential, p)
		require.Equal(t, "sftp", f.Via)
	}
	// The refused write is on record with its decision.
	reqs := ofType[schemas.SshRequest](t, evs, schemas.TypeSshRequest)
	decs := ofType[schemas.Decision](t, evs, schemas.TypeDecision)
	denied := map[uint64]bool{}
	for _, d := range decs {
		if d.Effect == schemas.EffectDeny {
			denied[d.QueryID] = true
		}
	}
	found := false
	for _, r := range reqs {
		if r.Request == "sftp" && r.SftpOp == "write" && r.Path == "/etc/gh-denied.bin" {
			found = true
			require.True(t, denied[r.QueryID])
		}
	}
	require.True(t, found, "the refused sftp write is not in the trail")
}

// TestInteractiveShell: a shell on a terminal, driven as a person would; what is typed and
// shown is recorded, a password typed at a sudo prompt is not, and the recorded output is
// what the client saw.
func TestInteractiveShell(t *testing.T) {
	e := start(t)
	keyFile, _ := e.certKey(t, ada, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	term := startTerminal(t, "ssh", append(append([]string{"-tt", "-p", port}, e.certArgs(keyFile)...), "web+"+sudoUser+"@127.0.0.1")...)
	at := term.expect(0, "$ ")
	term.typeText("echo $((6*7))-done\r")
	at = term.expect(at, "42-done")
	at = term.expect(at, "$ ")
	term.typeText("sudo -k; sudo -p 'pw-prompt password for %u: ' echo SUDO-OK\r")
	at = term.expect(at, "pw-prompt password for "+sudoUser+": ")
	term.typeText(sudoPassword + "\r")
	at = term.expect(at, "SUDO-OK")
	at = term.expect(at, "$ ")
	term.typeText("exit\r")
	select {
	case <-term.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the shell did not end")
	}
	_ = at

	evs := e.events(t, "web", sessionsEnded(1))
	reqs := ofType[schemas.SshRequest](t, evs, schemas.TypeSshRequest)
	var kinds []string
	for _, r := range reqs {
		kinds = append(kinds, r.Request)
	}
	require.Contains(t, kinds, "pty-req")
	require.Contains(t, kinds, "shell")
	var input, output strings.Builder
	hidden := uint64(0)
	for _, io := range ofType[schemas.SshIo](t, evs, schemas.TypeSshIo) {
		hidden += io.HiddenInput
		for _, f := range io.Frames {
			switch f.Code {
			case "i":
				input.WriteString(f.Data)
			case "o":
				output.WriteString(f.Data)
			}
		}
	}
	require.Contains(t, input.String(), "echo $((6*7))-done\r", "typed commands are recorded")
	require.NotContains(t, input.String(), sudoPassword, "the password typed at the sudo prompt is recorded")
	require.Contains(t, input.String(), strings.Repeat("*", len(sudoPassword))+"\r")
	require.Equal(t, uint64(len(sudoPassword)), hidden)
	for _, ev := range evs {
		require.NotContains(t, string(ev.Payload), sudoPassword, ev.Type)
	}
	term.mu.Lock()
	seen := term.seen.String()
	term.mu.Unlock()
	require.Contains(t, output.String(), "42-done")
	require.True(t, strings.Contains(seen, output.String()), "the recorded output is not what the client saw:\nrecorded %q\nseen %q", output.String(), seen)
	exits := ofType[schemas.SshExit](t, evs, schemas.TypeSshExit)
	require.Len(t, exits, 1)
	require.Equal(t, "exited", exits[0].Ended)
}

// TestTerminalRecordingIsMasked: on a terminal the client gets the output as the host wrote
// it (a terminal's stream cannot be rewritten without breaking what it draws), and the
// recording is masked.
func TestTerminalRecordingIsMasked(t *testing.T) {
	e := start(t)
	c, err := e.dial(t, "web-mask+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	s, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}))
	var out bytes.Buffer
	s.Stdout = &out
	require.NoError(t, s.Run(`a=41; printf "${a}11 1111"; sleep 0.2; printf " 1111 1111 end\n"`))
	require.Contains(t, out.String(), "4111 1111 1111 1111 end")
	c.Close()
	evs := e.events(t, "web-mask", sessionsEnded(1))
	var rec strings.Builder
	for _, io := range ofType[schemas.SshIo](t, evs, schemas.TypeSshIo) {
		for _, f := range io.Frames {
			rec.WriteString(f.Data)
		}
	}
	require.Contains(t, rec.String(), "end")
	require.NotContains(t, rec.String(), "4111 1111 1111 1111")
}

// TestTokenExpiryEndsTheSession: the session ends when the caller's token expires, and
// the client is told.
func TestTokenExpiryEndsTheSession(t *testing.T) {
	e := start(t)
	tok := e.mint(identity.TokenRequest{Subject: "short-lived", Groups: []string{"ops"}, TTL: 3 * time.Second})
	c, err := e.dial(t, "web+root", tok)
	require.NoError(t, err)
	defer c.Close()
	s, err := c.NewSession()
	require.NoError(t, err)
	var stderr bytes.Buffer
	s.Stderr = &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run("sleep 600") }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the session outlived its token")
	}
	require.Contains(t, stderr.String(), "the access token expired")
	evs := e.events(t, "web", sessionsEnded(1))
	ends := ofType[schemas.SessionEnd](t, evs, schemas.TypeSessionEnd)
	require.Equal(t, "token_expired", ends[0].Reason)
}

// TestHeldExecGivesUpWhenTheClientGoes: an exec waits for an approval, told so on stderr;
// the client goes away: the wait ends at once (approval.cancelled, client_disconnected) and
// so does the session — not at the approval's deadline.
func TestHeldExecGivesUpWhenTheClientGoes(t *testing.T) {
	e := start(t)
	c, err := e.dial(t, "web+root", e.token)
	require.NoError(t, err)
	s, err := c.NewSession()
	require.NoError(t, err)
	stderr, err := s.StderrPipe()
	require.NoError(t, err)
	go func() { _ = s.Start("touch /tmp/gh-held-never") }()
	line := make([]byte, 64)
	n, err := io.ReadAtLeast(stderr, line, len("gatehouse: waiting for approval"))
	require.NoError(t, err)
	require.Contains(t, string(line[:n]), "gatehouse: waiting for approval")
	// A person resizing the window while they wait: many requests on the held channel, more
	// than any queue holds, must not stop the gateway from seeing the client go.
	for i := 0; i < 300; i++ {
		require.NoError(t, s.WindowChange(24+i%10, 80))
	}
	c.Close()
	evs := e.events(t, "web", sessionsEnded(1))
	cancelled := ofType[schemas.ApprovalCancelled](t, evs, schemas.TypeApprovalCancelled)
	require.Len(t, cancelled, 1)
	require.Equal(t, "client_disconnected", cancelled[0].Reason)
	_, err = os.Stat("/tmp/gh-held-never")
	require.True(t, os.IsNotExist(err), "the held command ran")
}

// TestGatewayKeyRotation: the gateway's key is read for every connection: a rotated file is
// used by the next one, without a restart.
func TestGatewayKeyRotation(t *testing.T) {
	e := start(t)
	good, err := os.ReadFile(e.rotKey)
	require.NoError(t, err)
	out, errOut, code := e.ssh(t, e.token, "web-rot+root@127.0.0.1", "echo", "one")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "one\n", out)
	// A key the host does not know: the next connection is refused (the host says no).
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := gossh.MarshalPrivateKey(key, "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(e.rotKey, pem.EncodeToMemory(block), 0o600))
	_, errOut, code = e.ssh(t, e.token, "web-rot+root@127.0.0.1", "echo", "two")
	require.Equal(t, 255, code)
	require.Contains(t, errOut, "cannot connect to resource web-rot")
	require.NoError(t, os.WriteFile(e.rotKey, good, 0o600))
	out, errOut, code = e.ssh(t, e.token, "web-rot+root@127.0.0.1", "echo", "three")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "three\n", out)
}

// TestForwardingAllowedByARule: a local forwarding a rule allows works, to where it allows.
func TestForwardingAllowedByARule(t *testing.T) {
	e := start(t)
	c, err := e.dial(t, "web-fwd+root", e.token)
	require.NoError(t, err)
	defer c.Close()
	conn, err := c.Dial("tcp", e.sshd.Addr())
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	banner := make([]byte, 8)
	_, err = io.ReadFull(conn, banner)
	require.NoError(t, err)
	require.Equal(t, "SSH-2.0-", string(banner), "the forwarded connection reaches sshd")
	_, err = c.Dial("tcp", "127.0.0.1:1")
	require.ErrorContains(t, err, "port forwarding denied", "another destination was allowed")
}

// TestKeyboardInteractiveToken: the token as the answer to the keyboard-interactive prompt
// (what clients that never send passwords use), and a wrong answer refused with the reason.
func TestKeyboardInteractiveToken(t *testing.T) {
	e := start(t)
	answer := func(token string) gossh.KeyboardInteractiveChallenge {
		return func(_, instruction string, questions []string, echos []bool) ([]string, error) {
			if len(questions) == 0 {
				return nil, nil
			}
			require.Equal(t, []string{"Token: "}, questions)
			require.Equal(t, []bool{false}, echos, "the token is not echoed")
			return []string{token}, nil
		}
	}
	var banner strings.Builder
	dial := func(token string) (*gossh.Client, error) {
		return gossh.Dial("tcp", e.addr, &gossh.ClientConfig{User: "web+root", Auth: []gossh.AuthMethod{gossh.KeyboardInteractive(answer(token))},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second,
			BannerCallback: func(msg string) error { banner.WriteString(msg); return nil }})
	}
	c, err := dial(e.token)
	require.NoError(t, err)
	s, err := c.NewSession()
	require.NoError(t, err)
	out, err := s.Output("echo kbd")
	require.NoError(t, err)
	require.Equal(t, "kbd\n", string(out))
	c.Close()

	_, err = dial("not-a-token")
	require.Error(t, err)
	require.Contains(t, banner.String(), "gatehouse:", "the refusal says why")
}

// TestTypedValuesMaskedInARecording: on a masked resource, a card number typed at a shell is
// masked in the recorded keystrokes, as in the recorded output.
func TestTypedValuesMaskedInARecording(t *testing.T) {
	e := start(t)
	keyFile, _ := e.certKey(t, ada, time.Now().Add(time.Hour))
	_, port, _ := net.SplitHostPort(e.addr)
	term := startTerminal(t, "ssh", append(append([]string{"-tt", "-p", port}, e.certArgs(keyFile)...), "web-mask+root@127.0.0.1")...)
	at := term.expect(0, "# ")
	term.typeText("echo 4111 1111 1111 1111 typed\r")
	at = term.expect(at, "typed\r\n")
	term.expect(at, "# ")
	term.typeText("exit\r")
	select {
	case <-term.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the shell did not end")
	}
	evs := e.events(t, "web-mask", sessionsEnded(1))
	var input strings.Builder
	for _, io := range ofType[schemas.SshIo](t, evs, schemas.TypeSshIo) {
		for _, f := range io.Frames {
			if f.Code == "i" {
				input.WriteString(f.Data)
			}
		}
	}
	require.Contains(t, input.String(), "typed")
	for _, ev := range evs {
		require.NotContains(t, string(ev.Payload), "4111 1111 1111 1111", ev.Type)
	}
}
