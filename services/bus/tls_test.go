package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// TestTLS runs NATS that requires TLS with client certificates (mutual TLS): a component
// with the CA and its certificate connects and makes its streams; one with a wrong CA, one
// without a client certificate and one without TLS are refused with errors that say which
// setting to look at.
func TestTLS(t *testing.T) {
	ca := bustest.NewCA(t, "gatehouse-nats-ca")
	srvCert, srvKey := ca.Issue(t, "nats-server", true)
	cliCert, cliKey := ca.Issue(t, "proxy-postgres", false)
	srv := bustest.StartConfig(t, fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream { store_dir: \"$STORE\" }\n"+
		"tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 5 }\n", srvCert, srvKey, ca.File))
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

	b, err := connect(bus.Security{TLS: bus.TLS{CAFile: ca.File, CertFile: cliCert, KeyFile: cliKey}}, url)
	require.NoError(t, err)
	require.True(t, b.NC.TLSRequired())
	_, err = b.JS.Stream(context.Background(), bus.StreamAudit)
	require.NoError(t, err)

	other := bustest.NewCA(t, "someone-else")
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: other.File, CertFile: cliCert, KeyFile: cliKey}}, url)
	require.Error(t, err)
	require.ErrorContains(t, err, "not signed by nats.tls.ca_file "+other.File)

	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: ca.File}}, url)
	require.Error(t, err, "mutual TLS: no client certificate, no connection")
	require.ErrorContains(t, err, "nats.tls.cert_file and nats.tls.key_file")

	// A client certificate from another CA is refused by the server.
	otherCert, otherKey := other.Issue(t, "intruder", false)
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: ca.File, CertFile: otherCert, KeyFile: otherKey}}, url)
	require.ErrorContains(t, err, "a CA the server trusts")

	_, err = connect(bus.Security{}, "nats://"+url[len("tls://"):])
	require.Error(t, err)
	require.ErrorContains(t, err, "set nats.tls.ca_file", "the server requires TLS, the client has no CA for it")

	// Files that are not what they should be are named in the error.
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: filepath.Join(ca.Dir, "missing.pem")}}, url)
	require.ErrorContains(t, err, "tls.ca_file")
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: cliKey}}, url)
	require.ErrorContains(t, err, "no PEM certificate")
	_, err = connect(bus.Security{TLS: bus.TLS{CAFile: ca.File, CertFile: cliCert, KeyFile: srvKey}}, url)
	require.ErrorContains(t, err, "tls.cert_file")
}
