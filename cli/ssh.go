package cli

// `gatehouse ssh login`: sign in at the gateway's issuer (device flow, or the authorization
// code flow with PKCE and a loopback redirect when the issuer has no device endpoint),
// exchange the token for a short-lived SSH certificate (sshca), and write what plain `ssh`
// needs: the key, the certificate, the gateway's host keys; then print the ~/.ssh/config
// lines. The token is never printed.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/services/sshcert"
	"github.com/gatehouse/gatehouse/sshca"
)

// sshHostAlias is the Host name of the ~/.ssh/config lines printed.
const sshHostAlias = "gatehouse"

func sshCmd(args []string, stdout, stderr io.Writer) error {
	// Main has checked that args[0] is a subcommand of the table; login is the only one.
	return sshLoginCmd(args[1:], stdout, stderr)
}

func sshLoginCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ssh login", stdout)
	gateway := fs.String("gateway", "", "Gatehouse HTTP address (default: $GATEHOUSE_URL, else http://127.0.0.1:8080)")
	token := fs.String("token", "", "exchange this token for the certificate instead of signing in, for scripts (default: $GATEHOUSE_TOKEN when set)")
	dir := fs.String("dir", "~/.gatehouse/ssh", "directory of the key (id_ed25519, made on first use, mode 0600), the certificate (id_ed25519-cert.pub) and known_hosts")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser for an issuer without the device flow: only print the sign-in URL (the device flow never opens one)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	base := strings.TrimRight(*gateway, "/")
	if base == "" {
		base = apiURL()
	}
	keyDir, err := expandHome(*dir)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}

	tok, from := *token, "--token"
	if tok == "" {
		tok, from = strings.TrimSpace(os.Getenv("GATEHOUSE_TOKEN")), "GATEHOUSE_TOKEN"
	}
	if tok != "" {
		if err := looksLikeToken(tok); err != nil {
			return usageError{fmt.Sprintf("%s is not a token: %v", from, err)}
		}
		fmt.Fprintf(stderr, "Using the token from %s (no sign-in).\n", from)
	} else {
		var li sshca.LoginInfo
		if err := getJSON(ctx, hc, base+sshca.LoginPath, &li); err != nil {
			return fmt.Errorf("ask the gateway where to sign in: %w", err)
		}
		if tok, err = signIn(ctx, hc, li, !*noBrowser, stderr); err != nil {
			return err
		}
	}

	signer, err := loadOrCreateUserKey(filepath.Join(keyDir, "id_ed25519"))
	if err != nil {
		return err
	}
	body, _ := json.Marshal(sshca.CertificateRequest{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))})
	var cr sshca.CertificateResponse
	api := &apiClient{base: base, token: tok, http: hc}
	if err := api.post(sshca.CertificatesPath, body, &cr); err != nil {
		return fmt.Errorf("get an SSH certificate: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cr.Certificate))
	if err != nil {
		return fmt.Errorf("the gateway sent a certificate that does not parse: %w", err)
	}
	if cert, ok := pub.(*ssh.Certificate); !ok || string(cert.Key.Marshal()) != string(signer.PublicKey().Marshal()) {
		return errors.New("the gateway sent a certificate for another key")
	}
	until, err := time.Parse(time.RFC3339, cr.ValidBefore)
	if err != nil {
		return fmt.Errorf("the gateway sent valid_before %q: %w", cr.ValidBefore, err)
	}
	host, port, err := net.SplitHostPort(cr.SSHAddress)
	if err != nil {
		return fmt.Errorf("the gateway's ssh_address %q: %w", cr.SSHAddress, err)
	}
	certPath, khPath := filepath.Join(keyDir, "id_ed25519-cert.pub"), filepath.Join(keyDir, "known_hosts")
	if err := writeFileAtomic(certPath, []byte(cr.Certificate+"\n"), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(khPath, []byte(strings.Join(cr.HostKeys, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Certificate for %s written to %s.\n", cr.KeyID, certPath)

	fmt.Fprintf(stdout, "# Gatehouse SSH: add to ~/.ssh/config (once; `gatehouse ssh login` renews the certificate)\n")
	fmt.Fprintf(stdout, "Host %s\n  HostName %s\n", sshHostAlias, host)
	if port != "22" {
		fmt.Fprintf(stdout, "  Port %s\n", port)
	}
	fmt.Fprintf(stdout, "  IdentityFile %s\n  CertificateFile %s\n  UserKnownHostsFile %s\n  IdentitiesOnly yes\n",
		configPath(filepath.Join(keyDir, "id_ed25519")), configPath(certPath), configPath(khPath))
	fmt.Fprintf(stdout, "\n# Connect: ssh RESOURCE+LOGIN@%[1]s (the user name picks the resource and the account), e.g. ssh web-1+deploy@%[1]s\n", sshHostAlias)
	fmt.Fprintf(stdout, "# The certificate is valid until %s (%s from now, the token's expiry); then run gatehouse ssh login again.\n",
		until.Local().Format(time.RFC3339), time.Until(until).Round(time.Minute))
	return nil
}

// expandHome reads ~/ at the start of a path as the home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("--dir %s: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// configPath is a path as ssh_config takes it: ~/ for the home directory, quoted when it
// holds a space. ssh reads ~ as the account's home directory (passwd), not $HOME: where
// they differ, the path stays absolute.
func configPath(p string) string {
	home, err := os.UserHomeDir()
	if u, uerr := user.Current(); err == nil && uerr == nil && home != "" && filepath.Clean(u.HomeDir) == filepath.Clean(home) &&
		strings.HasPrefix(p, home+string(filepath.Separator)) {
		p = "~/" + strings.TrimPrefix(p, home+string(filepath.Separator))
	}
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

// loadOrCreateUserKey reads the Ed25519 key at path, or makes one (0600, and path.pub).
func loadOrCreateUserKey(path string) (ssh.Signer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	s, err := sshcert.LoadOrCreateKey(path)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("%s is protected by a passphrase: use another --dir (a key is made there)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("SSH key: %w", err)
	}
	// ssh refuses a private key others can read.
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
