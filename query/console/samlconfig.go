package console

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// Loading the SAML configuration: the identity provider's metadata and the service
// provider's key pair.

// MaxSAMLMetadataBytes bounds the IdP metadata FetchSAMLMetadata reads: one IdP's metadata
// is a few kilobytes (a federation's aggregate is not accepted anyway).
const MaxSAMLMetadataBytes = 1 << 20

// FetchSAMLMetadata reads an identity provider's metadata from metadataURL (at most
// MaxSAMLMetadataBytes; ctx bounds the time).
func FetchSAMLMetadata(ctx context.Context, client *http.Client, metadataURL string) (*saml.EntityDescriptor, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metadataURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", metadataURL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxSAMLMetadataBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", metadataURL, err)
	}
	if len(b) > MaxSAMLMetadataBytes {
		return nil, fmt.Errorf("GET %s: the metadata is larger than %d bytes", metadataURL, MaxSAMLMetadataBytes)
	}
	return ParseSAMLMetadata(b)
}

// ParseSAMLMetadata parses an identity provider's metadata: an EntityDescriptor, or an
// EntitiesDescriptor with exactly one identity provider in it.
func ParseSAMLMetadata(b []byte) (*saml.EntityDescriptor, error) {
	var root struct{ XMLName xml.Name }
	if err := xml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("parse the SAML metadata: %w", err)
	}
	var md *saml.EntityDescriptor
	switch root.XMLName.Local {
	case "EntityDescriptor":
		md = &saml.EntityDescriptor{}
		if err := xml.Unmarshal(b, md); err != nil {
			return nil, fmt.Errorf("parse the SAML metadata: %w", err)
		}
	case "EntitiesDescriptor":
		var all saml.EntitiesDescriptor
		if err := xml.Unmarshal(b, &all); err != nil {
			return nil, fmt.Errorf("parse the SAML metadata: %w", err)
		}
		for i, e := range all.EntityDescriptors {
			if len(e.IDPSSODescriptors) == 0 {
				continue
			}
			if md != nil {
				return nil, errors.New("the SAML metadata describes several identity providers: give the metadata of one")
			}
			md = &all.EntityDescriptors[i]
		}
		if md == nil {
			return nil, errors.New("the SAML metadata describes no identity provider (no IDPSSODescriptor)")
		}
	default:
		return nil, fmt.Errorf("parse the SAML metadata: <%s> is not SAML metadata (want an EntityDescriptor)", root.XMLName.Local)
	}
	if len(md.IDPSSODescriptors) == 0 {
		return nil, fmt.Errorf("the SAML metadata of %q describes no identity provider (no IDPSSODescriptor)", md.EntityID)
	}
	return md, nil
}

// ReadSAMLCertificate reads the service provider's certificate (PEM).
func ReadSAMLCertificate(file string) (*x509.Certificate, error) {
	b, err := readPEM(file, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return cert, nil
}

// ReadSAMLKey reads the service provider's private key (PEM: PKCS #8, PKCS #1 or SEC 1; RSA
// or ECDSA) and checks that it is the key of cert.
func ReadSAMLKey(file string, cert *x509.Certificate) (crypto.Signer, error) {
	b, err := readPEM(file, "")
	if err != nil {
		return nil, err
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(b); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(b); err != nil {
			if key, err = x509.ParseECPrivateKey(b); err != nil {
				return nil, fmt.Errorf("%s: not an RSA or ECDSA private key", file)
			}
		}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA or ECDSA private key", file)
	}
	if _, err := signatureMethod(signer); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if !samePublicKey(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of the certificate in certificate_file", file)
	}
	return signer, nil
}

// readPEM is the first PEM block of file (of the given type, unless typ is empty).
func readPEM(file, typ string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return nil, fmt.Errorf("%s: no PEM %s in it", file, typ)
		}
		if typ == "" || blk.Type == typ {
			return blk.Bytes, nil
		}
	}
}

func signatureMethod(key crypto.Signer) (string, error) {
	switch key.Public().(type) {
	case *rsa.PublicKey:
		return dsig.RSASHA256SignatureMethod, nil
	case *ecdsa.PublicKey:
		return dsig.ECDSASHA256SignatureMethod, nil
	}
	return "", fmt.Errorf("a %T key cannot sign SAML requests: use RSA or ECDSA", key.Public())
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// hasSigningCertificate reports whether the IdP's metadata names a certificate for signing.
func hasSigningCertificate(md *saml.EntityDescriptor) bool {
	for _, d := range md.IDPSSODescriptors {
		for _, k := range d.KeyDescriptors {
			if k.Use != "encryption" && len(k.KeyInfo.X509Data.X509Certificates) > 0 {
				return true
			}
		}
	}
	return false
}
