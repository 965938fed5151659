package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// pki is a CA with certificates it signed, as PEM files in dir.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t *testing.T, name string) *pki {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ca := &pki{dir: dir, cert: cert, key: key, file: filepath.Join(dir, "ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate for name (a server's for 127.0.0.1, or a client's) and
// returns its certificate and key files.
func (ca *pki) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// TestTLS runs NATS that requires TLS with client certificates (mutual TLS): a component
// with the CA and its certificate connects and makes its streams; one with a wrong CA, one
// without a client certificate and one without TLS are refused with errors that say which
// setting to look at.
func TestTLS(t *testing.T) {
	ca := newCA(t, "gatehouse-nats-ca")
	srvCert, srvKey := ca.issue(t, "nats-server", true)
	cliCert, cliKey := ca.issue(t, "proxy-postgres", false)
	srv := bustest.StartConfig(t, fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream { store_dir: \"$STORE\" }\n"+
		"tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 5 }\n", srvCert, srvKey, ca.file))
	url := srv.URL()
	require.Contains(t, url, "tls://")

	connect := func(sec bus.Security, url string) (*bus.Bus, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := bus.Connect(ctx, url, "tls-test", bus.Options{Security: sec, StreamMaxBytes: 1 << 30}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			t.Cleanup(b.NC.Close)
		}
		return b, err
	}

	b, err := connect(bus.Security{TLS: bus.TLS{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey}}, url)
	require.NoError(t, err)
	require.True(t, b.NC.TLSRequired())
	_, err = b.JS.Stream(context.Background(), bus.StreamAudit)
	require.NoError(t, err)

	other := newCA(t, "someone-else")
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: other.file, CertFile: cliCert, KeyFile: cliKey}}, url)
	require.Error(t, err)
	require.ErrorContains(t, err, "not signed by nats.tls.ca_file "+other.file)

	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: ca.file}}, url)
	require.Error(t, err, "mutual TLS: no client certificate, no connection")
	require.ErrorContains(t, err, "nats.tls.cert_file and nats.tls.key_file")

	// A client certificate from another CA is refused by the server.
	otherCert, otherKey := other.issue(t, "intruder", false)
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: ca.file, CertFile: otherCert, KeyFile: otherKey}}, url)
	require.ErrorContains(t, err, "a CA the server trusts")

	_, err = connect(bus.Security{}, "nats://"+url[len("tls://"):])
	require.Error(t, err)
	require.ErrorContains(t, err, "set nats.tls.ca_file", "the server requires TLS, the client has no CA for it")

	// Files that are not what they should be are named in the error.
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: filepath.Join(ca.dir, "missing.pem")}}, url)
	require.ErrorContains(t, err, "tls.ca_file")
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: cliKey}}, url)
	require.ErrorContains(t, err, "no PEM certificate")
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: ca.file, CertFile: cliCert, KeyFile: srvKey}}, url)
	require.ErrorContains(t, err, "tls.cert_file")
}
