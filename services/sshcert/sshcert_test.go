package sshcert

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/schemas"
)

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignAndVerify(t *testing.T) {
	ca, other, user := signer(t), signer(t), signer(t)
	now := time.Now()
	id := schemas.Identity{Subject: "u1", Name: "ada@example.com", Issuer: "https://idp", Groups: []string{"dba"}, Kind: "human"}
	cert, err := Sign(ca, user.PublicKey(), id, now.Add(30*time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	got, until, err := Verify([]ssh.PublicKey{other.PublicKey(), ca.PublicKey()}, cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "u1" || got.Name != "ada@example.com" || len(got.Groups) != 1 || got.Kind != "human" {
		t.Fatalf("identity %+v", got)
	}
	if d := until.Sub(now); d > 30*time.Minute || d < 29*time.Minute {
		t.Fatalf("valid until %s, %s from now; want the token's expiry", until, d)
	}
	// Another CA, expiry, a plain key, a host certificate: refused.
	if _, _, err := Verify([]ssh.PublicKey{other.PublicKey()}, cert, now); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("other CA: %v", err)
	}
	if _, _, err := Verify([]ssh.PublicKey{ca.PublicKey()}, cert, now.Add(31*time.Minute)); err == nil {
		t.Fatal("an expired certificate was accepted")
	}
	if _, _, err := Verify([]ssh.PublicKey{ca.PublicKey()}, user.PublicKey(), now); err == nil {
		t.Fatal("a plain key was accepted")
	}
	host := *cert
	host.CertType = ssh.HostCert
	if err := host.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify([]ssh.PublicKey{ca.PublicKey()}, &host, now); err == nil {
		t.Fatal("a host certificate was accepted as a user's")
	}
	// A changed identity breaks the signature.
	forged := *cert
	forged.Extensions = map[string]string{ExtensionIdentity: `{"subject":"root","issuer":"https://idp","kind":"human","groups":["admins"]}`}
	if _, _, err := Verify([]ssh.PublicKey{ca.PublicKey()}, &forged, now); err == nil {
		t.Fatal("a certificate with an altered identity was accepted")
	}
}

func TestSignBounds(t *testing.T) {
	ca, user := signer(t), signer(t)
	now := time.Now()
	id := schemas.Identity{Subject: "u1", Issuer: "https://idp", Kind: "service"}
	if _, err := Sign(ca, user.PublicKey(), id, now.Add(-time.Second), now); err == nil {
		t.Fatal("signed for an expired token")
	}
	cert, err := Sign(ca, user.PublicKey(), id, now.Add(1000*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if until := time.Unix(int64(cert.ValidBefore), 0); until.After(now.Add(MaxValidity)) {
		t.Fatalf("valid until %s, past the %s bound", until, MaxValidity)
	}
	if _, err := Sign(ca, cert, id, now.Add(time.Hour), now); err == nil {
		t.Fatal("certified a certificate")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := t.TempDir() + "/keys/host"
	a, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.PublicKey().Marshal()) != string(b.PublicKey().Marshal()) {
		t.Fatal("a second load made a new key")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a malformed key file was accepted")
	}
}
