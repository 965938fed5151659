package sshca_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/sshcert"
	"github.com/gatehouse/gatehouse/sshca"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	url  string
	dev  *identity.DevIssuer
	ca   ssh.Signer
	host ssh.Signer
	api  *sshca.API
}

func edSigner(t *testing.T) ssh.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(k)
	require.NoError(t, err)
	return s
}

// start serves the development issuer and the CA API with a real verifier trusting it.
func start(t *testing.T, revocations *bus.Revocations) *fixture {
	t.Helper()
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	dev, err := identity.NewDevIssuer(srv.URL+identity.DevIssuerPath, t.TempDir(), discard)
	require.NoError(t, err)
	dev.Register(e)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, discard)
	f := &fixture{url: srv.URL, dev: dev, ca: edSigner(t), host: edSigner(t)}
	f.api = &sshca.API{CA: f.ca, HostKeys: []ssh.PublicKey{f.host.PublicKey()}, SSHAddress: "127.0.0.1:2222", Verifier: v,
		Login: sshca.Login{Issuer: dev.Issuer(), ClientID: "gatehouse-cli", Scopes: []string{"openid"}}, Revocations: revocations, Log: discard}
	f.api.Register(e)
	return f
}

func (f *fixture) token(t *testing.T, ttl time.Duration) string {
	tok, err := f.dev.Mint(identity.TokenRequest{Subject: "u-123", Name: "ada@example.com", Groups: []string{"ops"}, TTL: ttl, Kind: "human"})
	require.NoError(t, err)
	return tok
}

// post sends body with token and returns the status and the decoded answer.
func (f *fixture) post(t *testing.T, token, body string) (int, map[string]any) {
	req, err := http.NewRequest(http.MethodPost, f.url+sshca.CertificatesPath, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func keyBody(k ssh.PublicKey) string {
	b, _ := json.Marshal(sshca.CertificateRequest{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " ada@laptop"})
	return string(b)
}

func TestCertificateForAGoodKey(t *testing.T) {
	f := start(t, nil)
	user := edSigner(t)
	tok := f.token(t, 30*time.Minute)
	tokenExpiry := time.Now().Add(30 * time.Minute)
	code, out := f.post(t, tok, keyBody(user.PublicKey()))
	require.Equal(t, http.StatusOK, code, out)

	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out["certificate"].(string)))
	require.NoError(t, err)
	cert := pub.(*ssh.Certificate)
	require.Equal(t, user.PublicKey().Marshal(), cert.Key.Marshal(), "the certificate certifies the key sent")
	id, until, err := sshcert.Verify([]ssh.PublicKey{f.ca.PublicKey()}, cert, time.Now())
	require.NoError(t, err)
	require.Equal(t, "u-123", id.Subject)
	require.Equal(t, "ada@example.com", id.Name)
	require.Equal(t, f.dev.Issuer(), id.Issuer)
	require.Equal(t, []string{"ops"}, id.Groups)
	require.False(t, until.After(tokenExpiry.Add(time.Second)), "valid until %s, past the token's expiry %s", until, tokenExpiry)
	require.WithinDuration(t, tokenExpiry, until, 10*time.Second)
	vb, err := time.Parse(time.RFC3339, out["valid_before"].(string))
	require.NoError(t, err)
	require.True(t, vb.Equal(until))
	require.Equal(t, "ada@example.com", out["key_id"])
	require.Equal(t, "127.0.0.1:2222", out["ssh_address"])
	hostLine := out["host_keys"].([]any)[0].(string)
	require.True(t, strings.HasPrefix(hostLine, "[127.0.0.1]:2222 ssh-ed25519 "), hostLine)

	// Real OpenSSH reads the certificate: its principal, key ID and validity.
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	path := filepath.Join(t.TempDir(), "id_ed25519-cert.pub")
	require.NoError(t, os.WriteFile(path, []byte(out["certificate"].(string)+"\n"), 0o644))
	listing, err := exec.Command("ssh-keygen", "-L", "-f", path).CombinedOutput()
	require.NoError(t, err, string(listing))
	s := string(listing)
	require.Contains(t, s, "ssh-ed25519-cert-v01@openssh.com user certificate")
	require.Contains(t, s, `Key ID: "ada@example.com"`)
	require.Regexp(t, `Principals:\s*\n\s*`+sshcert.Principal+`\n`, s)
	require.Contains(t, s, "Valid: from ")
	require.Contains(t, s, " to "+until.Local().Format("2006-01-02T15:04:05"))
	require.Contains(t, s, sshcert.ExtensionIdentity)
}

func TestOtherKeyTypes(t *testing.T) {
	f := start(t, nil)
	tok := f.token(t, time.Hour)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecPub, err := ssh.NewPublicKey(&ec.PublicKey)
	require.NoError(t, err)
	code, out := f.post(t, tok, keyBody(ecPub))
	require.Equal(t, http.StatusOK, code, out)

	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaPub, err := ssh.NewPublicKey(&rk.PublicKey)
	require.NoError(t, err)
	code, out = f.post(t, tok, keyBody(rsaPub))
	require.Equal(t, http.StatusOK, code, out)
}

func TestBadRequests(t *testing.T) {
	f := start(t, nil)
	tok := f.token(t, time.Hour)
	user := edSigner(t)

	// A certificate in place of a key.
	code, out := f.post(t, tok, keyBody(user.PublicKey()))
	require.Equal(t, http.StatusOK, code)
	certLine, _ := json.Marshal(sshca.CertificateRequest{PublicKey: out["certificate"].(string)})

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	smallPub, err := ssh.NewPublicKey(&small.PublicKey)
	require.NoError(t, err)
	two := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(user.PublicKey())))
	twoBody, _ := json.Marshal(sshca.CertificateRequest{PublicKey: two + "\n" + two})
	optBody, _ := json.Marshal(sshca.CertificateRequest{PublicKey: `command="/bin/sh" ` + two})
	// A security key's key parses, and is not one of the types certified.
	skBlob := ssh.Marshal(struct {
		Name, Key, App string
	}{"sk-ssh-ed25519@openssh.com", string(user.PublicKey().Marshal()[19:]), "ssh:"})
	skBody := `{"public_key": "sk-ssh-ed25519@openssh.com ` + base64.StdEncoding.EncodeToString(skBlob) + `"}`
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"not JSON", `public_key=x`, 400, `body is not {"public_key"`},
		{"unknown field", `{"key": "x"}`, 400, `unknown field "key"`},
		{"no key", `{}`, 400, "public_key is required"},
		{"malformed key", `{"public_key": "ssh-ed25519 AAAAnotbase64!!"}`, 400, "public_key is not an OpenSSH public key line"},
		{"a certificate", string(certLine), 400, "public_key is a certificate (ssh-ed25519-cert-v01@openssh.com): send the public key itself"},
		{"small RSA", keyBody(smallPub), 400, "public_key is a 1024-bit RSA key: at least 2048 bits are required"},
		{"security key", skBody, 400, "public_key is of type sk-ssh-ed25519@openssh.com: only ssh-ed25519"},
		{"two keys", string(twoBody), 400, "public_key holds more than one key"},
		{"options", string(optBody), 400, "public_key has authorized_keys options"},
		{"too large", `{"public_key": "` + strings.Repeat("A", sshca.MaxBodyBytes) + `"}`, 413, "body is larger than 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := f.post(t, tok, tc.body)
			require.Equal(t, tc.status, code, out)
			require.Contains(t, out["message"], tc.want)
		})
	}
}

func TestTokenRequired(t *testing.T) {
	f := start(t, nil)
	user := edSigner(t)
	code, out := f.post(t, "", keyBody(user.PublicKey()))
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, out["message"], "missing bearer token")
	expired, err := f.dev.MintAt(identity.TokenRequest{Subject: "u-123", TTL: time.Minute}, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	code, out = f.post(t, expired, keyBody(user.PublicKey()))
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, out["message"], "token expired")
}

func TestLoginIsPublic(t *testing.T) {
	f := start(t, nil)
	resp, err := http.Get(f.url + sshca.LoginPath)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var li sshca.LoginInfo
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&li))
	require.Equal(t, sshca.LoginInfo{Issuer: f.dev.Issuer(), ClientID: "gatehouse-cli", Scopes: []string{"openid"}, SSHAddress: "127.0.0.1:2222"}, li)
}

func TestRevokedIdentityGetsNoCertificate(t *testing.T) {
	b := bustest.Connect(t)
	regs, err := bus.FollowRevocations(t.Context(), b.JS, discard, nil)
	require.NoError(t, err)
	f := start(t, regs)
	tok := f.token(t, time.Hour)
	rv := schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "ada@example.com", Reason: "laptop stolen", By: "admin", At: time.Now()}
	require.NoError(t, bus.PublishRevocation(t.Context(), b.JS, rv, schemas.Identity{Subject: "admin"}))
	require.Eventually(t, func() bool {
		_, ok := regs.Check(time.Now(), schemas.RevokeKindIdentity, "ada@example.com")
		return ok
	}, 10*time.Second, 20*time.Millisecond)
	code, out := f.post(t, tok, keyBody(edSigner(t).PublicKey()))
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, out["message"], "ada@example.com is revoked by admin: laptop stolen")
}

func TestWildcardSSHAddressIsTheRequestsHost(t *testing.T) {
	f := start(t, nil)
	f.api.SSHAddress = "0.0.0.0:2222"
	tok := f.token(t, time.Hour)
	code, out := f.post(t, tok, keyBody(edSigner(t).PublicKey()))
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, "127.0.0.1:2222", out["ssh_address"])
	require.True(t, strings.HasPrefix(out["host_keys"].([]any)[0].(string), "[127.0.0.1]:2222 "))
	f.api.SSHAddress = ":22"
	code, out = f.post(t, tok, keyBody(edSigner(t).PublicKey()))
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, "127.0.0.1:22", out["ssh_address"])
	require.True(t, strings.HasPrefix(out["host_keys"].([]any)[0].(string), "127.0.0.1 ssh-ed25519 "), "port 22 is written without brackets")
}
