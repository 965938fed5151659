package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHProxy configures the SSH proxy listener.
type SSHProxy struct {
	Listen string `yaml:"listen"`
	// HostKeyFile is the gateway's own SSH host key (OpenSSH private key format), which
	// clients pin. Empty: one is generated in data_dir (ssh_host_ed25519_key) on first start.
	HostKeyFile string `yaml:"host_key_file"`
	// UserCAKeyFile is the CA that signs the short-lived certificates of `gatehouse ssh
	// login` (OpenSSH private key format); the proxy accepts certificates it signed in place
	// of a token. Empty: generated in data_dir (ssh_user_ca) on first start.
	UserCAKeyFile string `yaml:"user_ca_key_file"`
	// AuthTimeout bounds the key exchange and authentication of a connection.
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// MaxConnections bounds the connections the proxy serves at once; MaxUnauthenticated
	// those still in key exchange or authentication (what a flood of half-open connections
	// uses up).
	MaxConnections     int `yaml:"max_connections"`
	MaxUnauthenticated int `yaml:"max_unauthenticated"`
	// MaxChannels bounds the channels one connection has open at once.
	MaxChannels int `yaml:"max_channels"`
	// MaxRecordedBytes bounds what one channel records of its terminal or program output and
	// input (past it, bytes pass and are counted as not recorded).
	MaxRecordedBytes int64 `yaml:"max_recorded_bytes"`
	// Ciphers are the ciphers offered to clients; empty: AES-GCM only (fast in Go, spoken
	// by every OpenSSH since 6.2). Add chacha20-poly1305@openssh.com or aes128-ctr for
	// clients that lack it.
	Ciphers []string `yaml:"ciphers"`
}

// sshCiphers are the ciphers the proxy can offer.
var sshCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"}

func (p *SSHProxy) applyDefaults(dataDir string) {
	def(&p.Listen, "127.0.0.1:2222")
	def(&p.HostKeyFile, filepath.Join(dataDir, "ssh_host_ed25519_key"))
	def(&p.UserCAKeyFile, filepath.Join(dataDir, "ssh_user_ca"))
	def(&p.AuthTimeout, 30*time.Second)
	def(&p.MaxConnections, 1000)
	def(&p.MaxUnauthenticated, 100)
	def(&p.MaxChannels, 16)
	def(&p.MaxRecordedBytes, 64<<20)
}

func (p *SSHProxy) validate(path string, ck *checker) {
	ck.hostPort(path+".listen", p.Listen)
	if p.AuthTimeout <= 0 {
		ck.add(path+".auth_timeout", "%s: must be positive", p.AuthTimeout)
	}
	for name, v := range map[string]int{"max_connections": p.MaxConnections, "max_unauthenticated": p.MaxUnauthenticated, "max_channels": p.MaxChannels} {
		if v <= 0 {
			ck.add(path+"."+name, "%d: must be positive", v)
		}
	}
	for i, c := range p.Ciphers {
		ck.oneOf(fmt.Sprintf("%s.ciphers[%d]", path, i), c, sshCiphers...)
	}
	if p.MaxRecordedBytes < 0 {
		ck.add(path+".max_recorded_bytes", "%d: must not be negative", p.MaxRecordedBytes)
	}
}

// SSHBackend is how the proxy reaches an SSH resource. The key stays here.
type SSHBackend struct {
	Address string `yaml:"address"`
	// Logins are the accounts on the host callers may log in as (policy decides who may use
	// which); the first is the one used when the caller names none.
	Logins []string `yaml:"logins"`
	// KeyFile is the private key the gateway logs in with (OpenSSH format), and
	// CertificateFile, when set, its certificate. Both are read for every connection, so a
	// rotated key is used without a restart.
	KeyFile         string `yaml:"key_file"`
	CertificateFile string `yaml:"certificate_file"`
	// HostKey pins the host's public key (authorized_keys format: "ssh-ed25519 AAAA...");
	// HostCA instead trusts host certificates a CA signed. One of them is required: the
	// gateway never connects to a host it cannot authenticate.
	HostKey string `yaml:"host_key"`
	HostCA  string `yaml:"host_ca"`
	// ConnectTimeout bounds connecting and authenticating to the host (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Signer reads the key (and certificate) the gateway logs in with, now.
func (b *SSHBackend) Signer() (ssh.Signer, error) {
	pem, err := os.ReadFile(b.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("read key_file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", b.KeyFile, err)
	}
	if b.CertificateFile == "" {
		return s, nil
	}
	raw, err := os.ReadFile(b.CertificateFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate_file: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(raw)
	if err != nil {
		return nil, fmt.Errorf("certificate_file %s: %w", b.CertificateFile, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("certificate_file %s holds a plain key, not a certificate", b.CertificateFile)
	}
	cs, err := ssh.NewCertSigner(cert, s)
	if err != nil {
		return nil, fmt.Errorf("certificate_file %s: %w", b.CertificateFile, err)
	}
	return cs, nil
}

// HostKeyCallback is how the host's key is checked: the pinned key, or a certificate the
// host CA signed for the address's host name.
func (b *SSHBackend) HostKeyCallback() (ssh.HostKeyCallback, error) {
	if b.HostKey != "" {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.HostKey))
		if err != nil {
			return nil, fmt.Errorf("host_key: %w", err)
		}
		return ssh.FixedHostKey(k), nil
	}
	ca, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.HostCA))
	if err != nil {
		return nil, fmt.Errorf("host_ca: %w", err)
	}
	ck := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return string(auth.Marshal()) == string(ca.Marshal())
	}}
	return ck.CheckHostKey, nil
}

func (b *SSHBackend) applyDefaults() {
	def(&b.ConnectTimeout, 10*time.Second)
}

func (b *SSHBackend) validate(path string, ck *checker) {
	ck.hostPort(path+".address", b.Address)
	if len(b.Logins) == 0 {
		ck.add(path+".logins", "required: the accounts on the host callers may log in as")
	}
	for i, l := range b.Logins {
		if !validLogin(l) {
			ck.add(fmt.Sprintf("%s.logins[%d]", path, i), "%q is not an account name (letters, digits, '.', '_', '-')", l)
		}
	}
	ck.required(path+".key_file", b.KeyFile)
	switch {
	case b.HostKey == "" && b.HostCA == "":
		ck.add(path+".host_key", "required (or host_ca): the gateway connects only to a host whose key it can check")
	case b.HostKey != "" && b.HostCA != "":
		ck.add(path+".host_key", "host_key and host_ca are mutually exclusive")
	}
	if _, err := b.HostKeyCallback(); err != nil && (b.HostKey != "" || b.HostCA != "") {
		ck.add(path+".host_key", "%v", err)
	}
	if b.ConnectTimeout < 0 {
		ck.add(path+".connect_timeout", "%s is negative", b.ConnectTimeout)
	}
}

func validLogin(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
