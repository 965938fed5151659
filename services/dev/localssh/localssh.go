// Package localssh starts a real OpenSSH server (the installed /usr/sbin/sshd) as a child
// process on a free loopback port, with its configuration, host keys, client key, PID file
// and log in a given directory: the backend the SSH proxy's tests connect to. It runs as
// root, because sshd must switch to the users it logs in; AddUser creates those users.
//
// Keys live in the directory: starting again on the same directory keeps the host key (a
// restarted backend), a fresh directory makes fresh keys (two fixtures never share a host
// key, which is how a test gets a mismatching server).
//
// The client key is authorised in the real ~/.ssh/authorized_keys of root and of AddUser's
// users, on a line whose comment names the fixture's directory ("gatehouse-localssh:DIR");
// every later write drops the lines whose directory is gone, and keeps all others.
package localssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/services/dev/devproc"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
)

// SSHDPath is where Debian's openssh-server installs the server.
const SSHDPath = "/usr/sbin/sshd"

// ErrNotInstalled says OpenSSH's server is missing.
var ErrNotInstalled = errors.New("openssh-server not installed")

// ErrNotRoot says the fixture needs root: sshd logs users in and AddUser creates them.
var ErrNotRoot = errors.New("the sshd fixture needs root")

// SSHD is a running sshd. Its fields are set by Start and only read afterwards.
type SSHD struct {
	Dir  string // configuration, keys, PID file and log
	Port int    // on 127.0.0.1
	// HostKey is the server's ed25519 host public key, what a client pins.
	HostKey ssh.PublicKey
	// HostCAKey is the CA that signed HostCert; both are nil unless started with HostCA.
	HostCAKey ssh.PublicKey
	HostCert  *ssh.Certificate
	// ClientKeyFile is the private key authorised for root and for AddUser's users:
	// ed25519 in OpenSSH's format, mode 0600, readable by ssh -i and ssh.ParsePrivateKey.
	ClientKeyFile string
	ClientSigner  ssh.Signer
	// KnownHostsFile holds KnownHostsLine, for ssh -o UserKnownHostsFile=.
	KnownHostsFile string
	Log            string // sshd's own log (LogLevel VERBOSE)

	proc *devproc.Proc
}

// Option changes how Start configures sshd.
type Option func(*options)

type options struct{ hostCA bool }

// HostCA has the fixture make a host CA (ed25519, kept in the directory), sign the host key
// with it (principals 127.0.0.1, localhost and ::1) and serve the certificate as well as the
// plain key, so that a client may trust either the key or the CA.
func HostCA() Option { return func(o *options) { o.hostCA = true } }

// Addr is the server's host:port.
func (s *SSHD) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Pid is the listening sshd's process ID.
func (s *SSHD) Pid() int { return s.proc.Pid() }

// Stop ends every session (SIGKILL to each process sshd started, frozen first so none
// escapes), then stops sshd itself with SIGTERM and waits, killing it after 10 s. Unlike a
// real sshd's restart it leaves no session behind: no process of the fixture outlives Stop.
func (s *SSHD) Stop() error { return s.proc.StopTree(syscall.SIGTERM, 10*time.Second) }

// Kill kills sshd and every session at once (SIGKILL), as a crashed backend host would:
// clients see their connections drop.
func (s *SSHD) Kill() { _ = s.proc.StopTree(syscall.SIGKILL, 10*time.Second) }

const sshdConfig = `# Written by Gatehouse's test fixture (services/dev/localssh).
Port %[2]d
ListenAddress 127.0.0.1
AddressFamily inet
HostKey %[1]s/ssh_host_ed25519_key
%[3]sPidFile %[1]s/sshd.pid
LogLevel VERBOSE
UseDNS no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
Subsystem sftp internal-sftp
AcceptEnv LANG LC_* GH_*
MaxSessions 100
MaxStartups 200
ClientAliveInterval 0
PrintMotd no
PrintLastLog no
`

// Start starts sshd in dir (created if missing) on a free loopback port and returns once it
// answers the SSH handshake with its own host key. It authorises the client key for root.
func Start(ctx context.Context, dir string, opts ...Option) (*SSHD, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if st, err := os.Stat(SSHDPath); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%w: no %s (deploy/install-deps.sh test, or apt-get install openssh-server)", ErrNotInstalled, SSHDPath)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w (running as uid %d)", ErrNotRoot, os.Geteuid())
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The privilege-separation directory: sshd refuses to start without it, and it is on a
	// tmpfs that no service recreated when the packaged sshd never runs.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("privilege separation directory: %w", err)
	}
	if err := os.Chmod("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("privilege separation directory: %w", err)
	}
	s := &SSHD{Dir: dir, Log: filepath.Join(dir, "sshd.log")}
	if err := s.makeKeys(o.hostCA); err != nil {
		return nil, err
	}
	if err := s.authorizeUser("root"); err != nil {
		return nil, fmt.Errorf("authorise the client key for root: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The free port may be taken before sshd binds it; then try another.
	for attempt := 0; ; attempt++ {
		err := s.start(ctx)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 2 {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port taken")

func (s *SSHD) start(ctx context.Context) error {
	port, err := localdb.FreePort()
	if err != nil {
		return err
	}
	cert := ""
	if s.HostCert != nil {
		cert = "HostCertificate " + filepath.Join(s.Dir, "ssh_host_ed25519_key-cert.pub") + "\n"
	}
	conf := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(conf, fmt.Appendf(nil, sshdConfig, s.Dir, port, cert), 0o600); err != nil {
		return err
	}
	s.Port = port
	if err := s.writeKnownHosts(); err != nil {
		return err
	}
	logStart := fileSize(s.Log)
	// -D: stay in the foreground as our child; -e: log to stderr, which is the log file.
	p, err := devproc.Start("sshd", SSHDPath, []string{"-D", "-e", "-f", conf}, s.Log)
	if err != nil {
		return err
	}
	s.proc = p
	if err := s.waitReady(ctx); err != nil {
		_ = p.StopTree(syscall.SIGKILL, 10*time.Second)
		log := readFrom(s.Log, logStart)
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %d", errPortTaken, port)
		}
		return fmt.Errorf("%w; sshd's log (%s):\n%s", err, s.Log, log)
	}
	return nil
}

// waitReady waits until the server completes a key exchange showing our host key: that
// proves it is our sshd on the port and that it accepts connections. The probe then
// fails to authenticate, which is expected.
func (s *SSHD) waitReady(ctx context.Context) error {
	for {
		if s.proc.Exited() {
			return fmt.Errorf("sshd exited during startup (%v)", s.proc.Err)
		}
		ours, err := s.probe(ctx)
		if ours {
			return nil
		}
		if errors.Is(err, errForeignKey) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sshd not answering on %s: %w (last: %v)", s.Addr(), ctx.Err(), err)
		case <-s.proc.Done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var errForeignKey = errors.New("another SSH server answers on the port")

func (s *SSHD) probe(ctx context.Context) (bool, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	ours := false
	cfg := &ssh.ClientConfig{
		User:              "localssh-probe",
		HostKeyAlgorithms: []string{s.HostKey.Type()},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if string(key.Marshal()) != string(s.HostKey.Marshal()) {
				return errForeignKey
			}
			ours = true
			return nil
		},
	}
	conn, _, _, err := ssh.NewClientConn(c, s.Addr(), cfg)
	if err == nil {
		conn.Close() // no authentication method was offered; cannot happen
	}
	if errors.Is(err, errForeignKey) {
		return false, err
	}
	return ours, err
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}
