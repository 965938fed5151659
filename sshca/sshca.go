// Package sshca is the gateway's SSH certificate authority API: a person signed in with a
// short-lived OIDC token exchanges it, with a public key, for an SSH user certificate
// (services/sshcert) valid no longer than the token, so that plain `ssh` works without a
// token pasted anywhere; and a public endpoint tells the CLI where to sign in.
//
//	GET  /api/v1/ssh/login         public: {issuer, client_id, scopes, ssh_address}
//	POST /api/v1/ssh/certificates  bearer token: {"public_key": "ssh-ed25519 AAAA..."} →
//	                               {certificate, valid_before, key_id, serial, host_keys, ssh_address}
package sshca

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/sshcert"
)

// Paths of the API.
const (
	LoginPath        = "/api/v1/ssh/login"
	CertificatesPath = "/api/v1/ssh/certificates"
)

// MaxBodyBytes bounds a certificate request's body: a public key line is well under it
// (an RSA 16384-bit key is about 2.8 KB).
const MaxBodyBytes = 16 << 10

// MinRSABits is the smallest RSA key certified.
const MinRSABits = 2048

// Login is the OIDC client the CLI signs people in with (config identity.login).
type Login struct {
	Issuer   string
	ClientID string
	Scopes   []string
}

// API issues SSH user certificates for verified tokens.
type API struct {
	// CA signs the certificates (proxy.ssh.user_ca_key_file).
	CA ssh.Signer
	// HostKeys are the SSH proxy's host keys, returned for the client's known_hosts.
	HostKeys []ssh.PublicKey
	// SSHAddress is the host:port clients dial to reach the SSH proxy. A wildcard or empty
	// host (":2222", "0.0.0.0:2222", a listen address) is answered with the host name the
	// client reached this API at.
	SSHAddress string
	// AddressOf, when set, gives SSHAddress at each request instead (the proxy's bound
	// address, known once it listens).
	AddressOf func() string
	// Verifier checks the bearer token of a certificate request.
	Verifier *identity.Verifier
	// Login is where people sign in (GET /api/v1/ssh/login).
	Login Login
	// Revocations, when set, are the revocations in force: a revoked identity gets no
	// certificate (the proxy refuses it at connect in any case).
	Revocations *bus.Revocations
	// Log records the certificates issued (never the token).
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// LoginInfo is the answer of GET /api/v1/ssh/login.
type LoginInfo struct {
	Issuer     string   `json:"issuer"`
	ClientID   string   `json:"client_id"`
	Scopes     []string `json:"scopes"`
	SSHAddress string   `json:"ssh_address"`
}

// CertificateRequest is the body of POST /api/v1/ssh/certificates.
type CertificateRequest struct {
	// PublicKey is an OpenSSH public key line ("ssh-ed25519 AAAA... comment").
	PublicKey string `json:"public_key"`
}

// CertificateResponse is the answer of POST /api/v1/ssh/certificates.
type CertificateResponse struct {
	// Certificate is the certificate as an authorized_keys line (id_ed25519-cert.pub).
	Certificate string `json:"certificate"`
	// ValidBefore is when the certificate lapses: the token's expiry, at most
	// sshcert.MaxValidity from now (RFC 3339).
	ValidBefore string   `json:"valid_before"`
	KeyID       string   `json:"key_id"`
	Serial      string   `json:"serial"`
	Principals  []string `json:"principals"`
	// HostKeys are known_hosts lines of the SSH proxy's host keys for SSHAddress.
	HostKeys   []string `json:"host_keys"`
	SSHAddress string   `json:"ssh_address"`
}

// Register adds the routes.
func (a *API) Register(e *echo.Echo) {
	e.GET(LoginPath, a.login)
	e.POST(CertificatesPath, a.certificate, a.Verifier.Middleware(nil, ""))
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *API) login(c echo.Context) error {
	if a.Login.Issuer == "" {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "no sign-in issuer is configured: set identity.login.issuer (one of identity.issuers)")
	}
	return c.JSON(http.StatusOK, LoginInfo{Issuer: a.Login.Issuer, ClientID: a.Login.ClientID, Scopes: a.Login.Scopes, SSHAddress: a.sshAddress(c)})
}

// sshAddress is the address clients dial: SSHAddress, its wildcard host replaced by the
// host of the request.
func (a *API) sshAddress(c echo.Context) string {
	addr := a.SSHAddress
	if a.AddressOf != nil {
		addr = a.AddressOf()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		reqHost := c.Request().Host
		if h, _, err := net.SplitHostPort(reqHost); err == nil {
			reqHost = h
		}
		host = strings.Trim(reqHost, "[]")
	}
	return net.JoinHostPort(host, port)
}

func (a *API) certificate(c echo.Context) error {
	id := identity.FromContext(c)
	pub, err := readKey(c)
	if err != nil {
		return err
	}
	now := a.now()
	if a.Revocations != nil {
		if rv, ok := a.Revocations.Check(now, schemas.RevokeKindIdentity, schemas.RevocationTargets(id.Identity)...); ok {
			return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("%s is revoked by %s: %s", rv.Value, rv.Revoker(), rv.Why()))
		}
	}
	cert, err := sshcert.Sign(a.CA, pub, id.Identity, id.Expiry, now)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	addr := a.sshAddress(c)
	hostKeys := make([]string, 0, len(a.HostKeys))
	for _, k := range a.HostKeys {
		hostKeys = append(hostKeys, knownhosts.Line([]string{knownhosts.Normalize(addr)}, k))
	}
	until := time.Unix(int64(cert.ValidBefore), 0).UTC()
	serial := strconv.FormatUint(cert.Serial, 10)
	if a.Log != nil {
		a.Log.Info("ssh certificate issued", "sub", id.Subject, "name", id.Name, "issuer", id.Issuer,
			"key", ssh.FingerprintSHA256(pub), "serial", serial, "valid_before", until)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))) + " " + cert.KeyId
	return c.JSON(http.StatusOK, CertificateResponse{Certificate: line, ValidBefore: until.Format(time.RFC3339), KeyID: cert.KeyId,
		Serial: serial, Principals: cert.ValidPrincipals, HostKeys: hostKeys, SSHAddress: addr})
}

// readKey reads and checks the public key of a certificate request; its errors are 400s
// that say what was wrong.
func readKey(c echo.Context) (ssh.PublicKey, error) {
	bad := func(format string, args ...any) error {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, args...))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than %d bytes: send one public key", MaxBodyBytes))
	case err != nil:
		return nil, bad("body: %v", err)
	}
	var req CertificateRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, bad(`body is not {"public_key": "ssh-ed25519 AAAA..."}: %v`, err)
	}
	line := strings.TrimSpace(req.PublicKey)
	if line == "" {
		return nil, bad(`public_key is required: an OpenSSH public key line, as in id_ed25519.pub ("ssh-ed25519 AAAA... comment")`)
	}
	pub, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, bad(`public_key is not an OpenSSH public key line ("ssh-ed25519 AAAA... comment"): %v`, err)
	}
	if len(options) > 0 {
		return nil, bad("public_key has authorized_keys options (%s): send the key line alone", strings.Join(options, ","))
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, bad("public_key holds more than one key: send one")
	}
	return pub, checkKeyType(pub)
}

// checkKeyType accepts Ed25519, ECDSA and RSA keys of at least MinRSABits bits.
func checkKeyType(pub ssh.PublicKey) error {
	bad := func(format string, args ...any) error {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, args...))
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return bad("public_key is a certificate (%s): send the public key itself (id_ed25519.pub), not a certificate", pub.Type())
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return nil
	case ssh.KeyAlgoRSA:
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return bad("public_key: cannot read the RSA key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return bad("public_key: cannot read the RSA key")
		}
		if n := rk.N.BitLen(); n < MinRSABits {
			return bad("public_key is a %d-bit RSA key: at least %d bits are required (or use ssh-keygen -t ed25519)", n, MinRSABits)
		}
		return nil
	}
	return bad("public_key is of type %s: only ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa (at least %d bits) are certified", pub.Type(), MinRSABits)
}
