// Package sshcert is the format of the SSH user certificates the gateway's CA signs for
// people (`gatehouse ssh login`) and the SSH proxy accepts in place of a token: who the
// caller is travels in the certificate, signed, and the certificate lapses no later than
// the token it was issued for.
package sshcert

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/schemas"
)

// ExtensionIdentity is the certificate extension holding the caller's identity (JSON of
// schemas.Identity). OpenSSH ignores extensions it does not know; the proxy reads it.
const ExtensionIdentity = "identity@gatehouse.dev"

// Principal is the one principal every certificate names: the SSH user name selects the
// resource and the login at the proxy, not the principal.
const Principal = "gatehouse"

// MaxValidity bounds a certificate's life whatever the token's.
const MaxValidity = 24 * time.Hour

// backdate lets a certificate be used at once by a host whose clock is a little behind.
const backdate = time.Minute

// Sign issues a user certificate for pub to id, valid from now until notAfter (the token's
// expiry; at most MaxValidity from now).
func Sign(ca ssh.Signer, pub ssh.PublicKey, id schemas.Identity, notAfter, now time.Time) (*ssh.Certificate, error) {
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, errors.New("the key to certify is itself a certificate: send the public key")
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the token expired at %s: sign in again", notAfter.UTC().Format(time.RFC3339))
	}
	if limit := now.Add(MaxValidity); notAfter.After(limit) {
		notAfter = limit
	}
	idJSON, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	keyID := id.Name
	if keyID == "" {
		keyID = id.Subject
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{Principal},
		ValidAfter:      uint64(now.Add(-backdate).Unix()),
		ValidBefore:     uint64(notAfter.Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{
			// What the client may ask for; the gateway's policy decides each request.
			"permit-pty": "", "permit-port-forwarding": "", "permit-agent-forwarding": "", "permit-user-rc": "",
			ExtensionIdentity: string(idJSON),
		}},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return cert, nil
}

// Verify checks that key is a user certificate one of cas signed, valid at now, and returns
// the identity it carries and when it lapses.
func Verify(cas []ssh.PublicKey, key ssh.PublicKey, now time.Time) (schemas.Identity, time.Time, error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return schemas.Identity{}, time.Time{}, errors.New("not a certificate")
	}
	if cert.CertType != ssh.UserCert {
		return schemas.Identity{}, time.Time{}, errors.New("not a user certificate")
	}
	trusted := false
	for _, ca := range cas {
		if ca != nil && string(ca.Marshal()) == string(cert.SignatureKey.Marshal()) {
			trusted = true
			break
		}
	}
	if !trusted {
		return schemas.Identity{}, time.Time{}, errors.New("the certificate is not signed by this gateway's CA")
	}
	checker := &ssh.CertChecker{Clock: func() time.Time { return now }, SupportedCriticalOptions: nil}
	if err := checker.CheckCert(Principal, cert); err != nil {
		return schemas.Identity{}, time.Time{}, err
	}
	raw, ok := cert.Extensions[ExtensionIdentity]
	if !ok {
		return schemas.Identity{}, time.Time{}, errors.New("the certificate carries no Gatehouse identity")
	}
	var id schemas.Identity
	if err := json.Unmarshal([]byte(raw), &id); err != nil || id.Subject == "" || id.Issuer == "" {
		return schemas.Identity{}, time.Time{}, errors.New("the certificate's Gatehouse identity is malformed")
	}
	return id, time.Unix(int64(cert.ValidBefore), 0), nil
}
