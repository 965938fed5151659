package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Security is how a component proves who it is to NATS and how it checks the server:
// at most one of a credentials file (JWT and nkey, NATS's decentralised auth), an nkey
// seed file, or a user with a password file; TLS with a CA (and a client certificate for
// mutual TLS); the inbox prefix its permissions allow it to read replies on.
type Security struct {
	CredentialsFile string
	NKeyFile        string
	User            string
	PasswordFile    string
	// TLS is on when Required is set or any file is: the server must then offer TLS and
	// present a certificate CAFile (or, without CAFile, the system's roots) trusts.
	TLS TLS
	// InboxPrefix is where the replies to this component's requests arrive
	// ("_INBOX.proxy-postgres"); permissions let each component read its own only.
	InboxPrefix string
}

// TLS is the client side of TLS to NATS.
type TLS struct {
	Required bool
	CAFile   string
	CertFile string
	KeyFile  string
}

// On reports whether the connection uses TLS.
func (t TLS) On() bool { return t.Required || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Empty reports whether nothing is set: an anonymous plain connection.
func (s Security) Empty() bool { return s == Security{} }

// Options loads the files s names and returns them as nats.go options. Every error names
// the file and what is wrong with it; no secret is ever part of one.
func (s Security) Options() ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	for _, set := range []bool{s.CredentialsFile != "", s.NKeyFile != "", s.User != "" || s.PasswordFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("choose one way to authenticate: credentials_file, nkey_file, or user with password_file")
	}
	switch {
	case s.CredentialsFile != "":
		if err := checkCreds(s.CredentialsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(s.CredentialsFile))
	case s.NKeyFile != "":
		o, err := nkeyOption(s.NKeyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	case s.User != "" || s.PasswordFile != "":
		if s.User == "" || s.PasswordFile == "" {
			return nil, errors.New("user and password_file go together")
		}
		pw, err := readSecret(s.PasswordFile, "password_file")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(s.User, pw))
	}
	if s.TLS.On() {
		tc, err := s.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	if s.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(s.InboxPrefix))
	}
	return opts, nil
}

func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("tls.cert_file and tls.key_file go together (mutual TLS needs both)")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error of LoadX509KeyPair names neither file, nor shows key material.
			return nil, fmt.Errorf("tls.cert_file %s with tls.key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// readSecret reads a one-line secret from file; field names the setting in errors.
func readSecret(file, field string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s %s is empty", field, file)
	}
	return v, nil
}

// nkeyOption signs the server's nonce with the user seed in file.
func nkeyOption(file string) (nats.Option, error) {
	seed, err := readSecret(file, "nkey_file")
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return nil, fmt.Errorf("nkey_file %s: not an nkey seed (SU...): %v", file, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("nkey_file %s: not a user seed (SU...)", file)
	}
	return nats.Nkey(pub, func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }), nil
}

// checkCreds checks that file holds a user JWT and an nkey seed, as `nsc` writes them.
func checkCreds(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("credentials_file: %w", err)
	}
	tok, err := nkeys.ParseDecoratedJWT(b)
	if err == nil {
		_, err = jwt.DecodeUserClaims(tok)
	}
	if err != nil {
		return fmt.Errorf("credentials_file %s: no user JWT in it: %v", file, err)
	}
	if _, err := nkeys.ParseDecoratedNKey(b); err != nil {
		return fmt.Errorf("credentials_file %s: no nkey seed in it: %v", file, err)
	}
	return nil
}

// redactURLs is url (comma-separated servers) without any password in it.
func redactURLs(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// connectHint says, after a failed connect, which setting to look at.
func connectHint(err error, s Security) string {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		if s.TLS.CAFile != "" {
			return fmt.Sprintf(" (the server's certificate is not signed by nats.tls.ca_file %s)", s.TLS.CAFile)
		}
		return " (the server's certificate is not signed by a CA this system trusts: set nats.tls.ca_file)"
	case errors.As(err, &hostErr):
		return " (the server's certificate is not for this host name: connect by a name it lists)"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return " (the server does not offer TLS, but nats.tls is set)"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return " (the server requires TLS: set nats.tls and use tls:// URLs)"
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return " (check nats.credentials_file, nats.nkey_file or nats.user and nats.password_file)"
	case strings.Contains(err.Error(), "certificate required"), strings.Contains(err.Error(), "bad certificate"):
		return " (the server wants a client certificate signed by a CA the server trusts: set nats.tls.cert_file and nats.tls.key_file)"
	case strings.Contains(err.Error(), "tls") && s.TLS.CertFile == "":
		// A server that requires a client certificate closes the connection after the
		// handshake of a client without one; TLS 1.3 gives no better reason.
		return " (the server closed the TLS connection: if it requires mutual TLS, set nats.tls.cert_file and nats.tls.key_file, signed by a CA the server trusts)"
	case strings.Contains(err.Error(), "tls"):
		return " (the server closed the TLS connection: is nats.tls.cert_file signed by a CA the server trusts?)"
	}
	return ""
}
