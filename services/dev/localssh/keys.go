package localssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostPrincipals are the names the host certificate is valid for: how tests reach the server.
var hostPrincipals = []string{"127.0.0.1", "localhost", "::1"}

// makeKeys loads the host, client and (with hostCA) CA keys from s.Dir, making those that
// are missing, and signs a fresh host certificate.
func (s *SSHD) makeKeys(hostCA bool) error {
	host, err := loadOrMakeKey(filepath.Join(s.Dir, "ssh_host_ed25519_key"), "gatehouse-localssh-host")
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	s.HostKey = host.PublicKey()
	s.ClientKeyFile = filepath.Join(s.Dir, "client_ed25519")
	if s.ClientSigner, err = loadOrMakeKey(s.ClientKeyFile, "gatehouse-localssh-client"); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	if !hostCA {
		return nil
	}
	ca, err := loadOrMakeKey(filepath.Join(s.Dir, "host_ca_ed25519"), "gatehouse-localssh-host-ca")
	if err != nil {
		return fmt.Errorf("host CA key: %w", err)
	}
	cert := &ssh.Certificate{
		Key:             s.HostKey,
		CertType:        ssh.HostCert,
		KeyId:           "gatehouse-localssh-host",
		ValidPrincipals: hostPrincipals,
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		return fmt.Errorf("sign host certificate: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.Dir, "ssh_host_ed25519_key-cert.pub"), ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		return err
	}
	s.HostCAKey, s.HostCert = ca.PublicKey(), cert
	return nil
}

// loadOrMakeKey reads an ed25519 private key in OpenSSH's format from path, or makes one
// and writes it there (0600, as sshd and ssh demand) with its public half at path.pub.
func loadOrMakeKey(path, comment string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return ssh.ParsePrivateKey(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment + "\n"
	if err := writeFileAtomic(path+".pub", []byte(pub), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return signer, nil
}

// writeFileAtomic writes through a temporary file, so that no reader sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// HostKeyLine is the host public key as one authorized_keys line ("ssh-ed25519 AAAA…"),
// the form a configuration pins.
func (s *SSHD) HostKeyLine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))
}

// KnownHostsLine is the host key as a known_hosts line for this server's address
// ("[127.0.0.1]:port ssh-ed25519 AAAA…").
func (s *SSHD) KnownHostsLine() string {
	return knownhosts.Line([]string{s.Addr()}, s.HostKey)
}

// KnownHostsCALine is a known_hosts line trusting the host CA for this server's address
// ("@cert-authority [127.0.0.1]:port ssh-ed25519 AAAA…"); empty unless started with HostCA.
func (s *SSHD) KnownHostsCALine() string {
	if s.HostCAKey == nil {
		return ""
	}
	return "@cert-authority " + knownhosts.Line([]string{s.Addr()}, s.HostCAKey)
}

func (s *SSHD) writeKnownHosts() error {
	s.KnownHostsFile = filepath.Join(s.Dir, "known_hosts")
	return writeFileAtomic(s.KnownHostsFile, []byte(s.KnownHostsLine()+"\n"), 0o644)
}

// ClientConfig logs in as user with the client key, pinning the host key (and asking for
// the plain key, not the certificate, so that pinning works with HostCA too).
func (s *SSHD) ClientConfig(user string) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback:   ssh.FixedHostKey(s.HostKey),
		HostKeyAlgorithms: []string{s.HostKey.Type()},
		Timeout:           10 * time.Second,
	}
}

// Dial connects and logs in with config (ClientConfig(user) for the usual case), within
// ctx for the connection and the handshake.
func (s *SSHD) Dial(ctx context.Context, config *ssh.ClientConfig) (*ssh.Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	conn, chans, reqs, err := ssh.NewClientConn(c, s.Addr(), config)
	if !stop() || err != nil {
		c.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("ssh %s@%s: %w", config.User, s.Addr(), err)
	}
	_ = c.SetDeadline(time.Time{})
	return ssh.NewClient(conn, chans, reqs), nil
}

// SSHArgs are the OpenSSH client's arguments to log in as user with the client key,
// checking the host key strictly against KnownHostsFile and ignoring any ssh_config and
// agent; append a remote command to run one.
func (s *SSHD) SSHArgs(user string, command ...string) []string {
	args := []string{
		"-F", "/dev/null",
		"-i", s.ClientKeyFile,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "UserKnownHostsFile=" + s.KnownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-p", fmt.Sprint(s.Port),
		"-l", user,
		"127.0.0.1",
	}
	return append(args, command...)
}
