// Package sshtest starts a real OpenSSH server for a test, on a free loopback port in the
// test's temporary directory, and stops it when the test ends. Where the fixture cannot run
// (not root, openssh-server not installed) the test is skipped, saying how to fix that.
package sshtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/services/dev/localssh"
)

// Require skips t unless this machine can run the fixture: it must run as root and have
// OpenSSH's server (deploy/install-deps.sh test installs it with sudo and rsync).
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipped: the sshd fixture runs sshd and creates users, which needs root (running as uid %d)", os.Geteuid())
	}
	if st, err := os.Stat(localssh.SSHDPath); err != nil || st.IsDir() {
		t.Skipf("skipped: OpenSSH's server is not installed (no %s); install it with deploy/install-deps.sh test (apt-get install openssh-server sudo rsync)", localssh.SSHDPath)
	}
}

// Start starts sshd for t in t.TempDir(), skipping t where Require would.
func Start(t testing.TB, opts ...localssh.Option) *localssh.SSHD {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := localssh.Start(ctx, t.TempDir(), opts...)
	if errors.Is(err, localssh.ErrNotInstalled) || errors.Is(err, localssh.ErrNotRoot) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Logf("stop sshd: %v", err)
		}
	})
	return s
}

// AddUser is s.AddUser, failing t on error.
func AddUser(t testing.TB, s *localssh.SSHD, name, password string, sudo bool) {
	t.Helper()
	if err := s.AddUser(name, password, sudo); err != nil {
		t.Fatal(err)
	}
}

// Dial logs in to s as user with the client key and the pinned host key, failing t on
// error; the client is closed when the test ends.
func Dial(t testing.TB, s *localssh.SSHD, user string) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, s.ClientConfig(user))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Run runs command in a new session on c with stdin and returns its output and exit
// status (-1 if it ended without one, e.g. killed by a signal), failing t only when the
// session cannot be opened or run.
func Run(t testing.TB, c *ssh.Client, command, stdin string) (stdout, stderr string, status int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdin, sess.Stdout, sess.Stderr = strings.NewReader(stdin), &out, &errOut
	err = sess.Run(command)
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		status = exit.ExitStatus()
		if exit.Signal() != "" {
			status = -1
		}
	case errors.As(err, &missing):
		status = -1
	default:
		t.Fatalf("run %q: %v", command, err)
	}
	return out.String(), errOut.String(), status
}
