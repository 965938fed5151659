package localssh_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatehouse/gatehouse/services/dev/localssh"
	"github.com/gatehouse/gatehouse/services/dev/localssh/sshtest"
)

// Test accounts: they stay on the machine. The names are this package's own: packages
// test in parallel, and proxy/ssh has a sudo user with another password.
const (
	loginUser = "ghtest-ls-login"
	sudoUser  = "ghtest-ls-sudo"
)

func TestLoginAsRootAndUser(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)

	key, err := os.ReadFile(s.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(key, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Fatalf("client key not in OpenSSH's format:\n%.60s", key)
	}
	if _, err := ssh.ParsePrivateKey(key); err != nil {
		t.Fatalf("x/crypto cannot read the client key: %v", err)
	}
	checkMode(t, s.ClientKeyFile, 0o600, 0)

	// Twice: creating again must work.
	sshtest.AddUser(t, s, loginUser, "login-pw-1", false)
	sshtest.AddUser(t, s, loginUser, "login-pw-1", false)
	u, err := user.Lookup(loginUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	checkMode(t, filepath.Join(u.HomeDir, ".ssh"), os.ModeDir|0o700, uid)
	checkMode(t, filepath.Join(u.HomeDir, ".ssh", "authorized_keys"), 0o600, uid)

	for _, name := range []string{"root", loginUser} {
		c := sshtest.Dial(t, s, name)
		if out, _, code := sshtest.Run(t, c, "id -un", ""); code != 0 || out != name+"\n" {
			t.Errorf("id -un as %s: %q, exit %d", name, out, code)
		}
		if out, _, code := sshtest.Run(t, c, "echo hi", ""); code != 0 || out != "hi\n" {
			t.Errorf("echo hi as %s: %q, exit %d", name, out, code)
		}

		// OpenSSH's own client, checking the host key strictly against the fixture's
		// known_hosts line.
		out, err := exec.Command("ssh", s.SSHArgs(name, "id -un; echo hi")...).CombinedOutput()
		if err != nil || string(out) != name+"\nhi\n" {
			t.Errorf("ssh as %s: %v\n%s", name, err, out)
		}
	}
}

func TestOptionsTheProxyNeeds(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := sshtest.Dial(t, s, "root")

	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Setenv("GH_TRACE", "abc"); err != nil {
		t.Errorf("AcceptEnv GH_*: %v", err)
	}
	out, err := sess.Output("echo $GH_TRACE")
	if err != nil || string(out) != "abc\n" {
		t.Errorf("GH_TRACE in the session: %q %v", out, err)
	}

	sess, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Errorf("sftp subsystem: %v", err)
	}
	sess.Close()

	// TCP forwarding, to sshd itself: its banner comes back through the tunnel.
	fwd, err := c.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("direct-tcpip: %v", err)
	}
	banner, err := bufio.NewReader(fwd).ReadString('\n')
	fwd.Close()
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("banner through the tunnel: %q %v", banner, err)
	}

	// Passwords are not accepted by sshd (only by sudo).
	cfg := s.ClientConfig("root")
	cfg.Auth = []ssh.AuthMethod{ssh.Password("x")}
	if c, err := s.Dial(context.Background(), cfg); err == nil {
		c.Close()
		t.Error("password login accepted")
	}
}

func TestSudoAsksForThePassword(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	sshtest.AddUser(t, s, sudoUser, "sudo-pw-1", true)
	c := sshtest.Dial(t, s, sudoUser)

	if out, errOut, code := sshtest.Run(t, c, "sudo -S -k -p '' id -un", "sudo-pw-1\n"); code != 0 || out != "root\n" {
		t.Errorf("sudo with the right password: %q %q, exit %d", out, errOut, code)
	}
	if _, errOut, code := sshtest.Run(t, c, "sudo -S -k -p '' true", "wrong\n"); code == 0 {
		t.Errorf("sudo with a wrong password succeeded: %q", errOut)
	}
	if _, errOut, code := sshtest.Run(t, c, "sudo -n true", ""); code == 0 || !strings.Contains(errOut, "password is required") {
		t.Errorf("sudo without a password: %q, exit %d", errOut, code)
	}

	// Again with another password: the account follows.
	sshtest.AddUser(t, s, sudoUser, "sudo-pw-2", true)
	if _, errOut, code := sshtest.Run(t, c, "sudo -S -k -p '' true", "sudo-pw-2\n"); code != 0 {
		t.Errorf("sudo with the new password: %q, exit %d", errOut, code)
	}
	// Without sudo, the rule is gone.
	sshtest.AddUser(t, s, sudoUser, "sudo-pw-2", false)
	if _, errOut, code := sshtest.Run(t, c, "sudo -S -k -p '' true", "sudo-pw-2\n"); code == 0 {
		t.Errorf("sudo without the rule succeeded: %q", errOut)
	}
	sshtest.AddUser(t, s, sudoUser, "sudo-pw-1", true)
}

func TestHostCA(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t, localssh.HostCA())
	if s.HostCAKey == nil || s.HostCert == nil || !bytes.Equal(s.HostCert.Key.Marshal(), s.HostKey.Marshal()) {
		t.Fatal("no host certificate for the host key")
	}

	// Trusting the CA, asking for the certificate.
	checker := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return bytes.Equal(auth.Marshal(), s.HostCAKey.Marshal())
	}}
	cfg := s.ClientConfig("root")
	cfg.HostKeyCallback = checker.CheckHostKey
	cfg.HostKeyAlgorithms = []string{ssh.CertAlgoED25519v01}
	c, err := s.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("login trusting the CA: %v", err)
	}
	c.Close()
	// Pinning the key still works.
	sshtest.Dial(t, s, "root")

	// OpenSSH trusting only the CA.
	caFile := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(caFile, []byte(s.KnownHostsCALine()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-o", "UserKnownHostsFile=" + caFile}, s.SSHArgs("root", "id -un")...)
	if out, err := exec.Command("ssh", args...).CombinedOutput(); err != nil || string(out) != "root\n" {
		t.Errorf("ssh trusting the CA: %v\n%s", err, out)
	}
}

func TestFixturesHaveTheirOwnHostKeys(t *testing.T) {
	t.Parallel()
	a, b := sshtest.Start(t), sshtest.Start(t)
	if bytes.Equal(a.HostKey.Marshal(), b.HostKey.Marshal()) || a.Port == b.Port {
		t.Fatal("two fixtures share a host key or a port")
	}
	// a's pinned key does not open b.
	if c, err := b.Dial(context.Background(), a.ClientConfig("root")); err == nil {
		c.Close()
		t.Fatal("b accepted as a")
	}
	// Nor does OpenSSH accept b under a's key.
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(wrong, []byte(knownhosts.Line([]string{b.Addr()}, a.HostKey)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-o", "UserKnownHostsFile=" + wrong}, b.SSHArgs("root", "true")...)
	if out, err := exec.Command("ssh", args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "Host key verification failed") {
		t.Errorf("ssh with the wrong host key: %v\n%s", err, out)
	}

	// Started again on its directory, a server keeps its host key.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	again, err := localssh.Start(context.Background(), a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	if !bytes.Equal(again.HostKey.Marshal(), a.HostKey.Marshal()) {
		t.Error("restarted server has a new host key")
	}
	sshtest.Dial(t, again, "root")
}

func TestStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*localssh.SSHD) error
	}{
		{"stop", (*localssh.SSHD).Stop},
		{"kill", func(s *localssh.SSHD) error { s.Kill(); return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := sshtest.Start(t)
			c := sshtest.Dial(t, s, "root")
			// A session with a child, and a second connection.
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			stdout, _ := sess.StdoutPipe()
			if err := sess.Start("echo $$; exec sleep 1000"); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			sleeper, _ := strconv.Atoi(strings.TrimSpace(line))
			sshtest.Dial(t, s, "root")

			pids := append(localssh.Descendants(s.Pid()), s.Pid())
			if !contains(pids, sleeper) {
				t.Fatalf("session process %d not under sshd %d (%v)", sleeper, s.Pid(), pids)
			}
			if err := tc.stop(s); err != nil {
				t.Error(err)
			}

			for _, pid := range pids {
				if state, err := localssh.ProcState(pid); err == nil && state != 'Z' {
					cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
					stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
					t.Errorf("process %d left behind (state %c): %q %s", pid, state, cmdline, stat)
				}
			}
			if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
				conn.Close()
				t.Error("still accepting connections")
			}
			// The client sees its connection end.
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("client connection still open")
			}
		})
	}
}

func contains(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func checkMode(t *testing.T, path string, mode os.FileMode, uid int) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != mode || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("%s: mode %v owner %d, want %v owner %d", path, st.Mode(), st.Sys().(*syscall.Stat_t).Uid, mode, uid)
	}
}
