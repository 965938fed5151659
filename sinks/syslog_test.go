package sinks_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/sinks"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// startRsyslog starts rsyslogd taking TLS with a fresh self-signed certificate.
func startRsyslog(t *testing.T) (dir, certFile, keyFile string, pool *x509.CertPool, rs *localdb.Rsyslog) {
	// rsyslogd may run as another user when tests run as root: a reachable directory.
	dir, err := os.MkdirTemp("", "gh-rsyslog-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	certFile, keyFile, pool = selfSigned(t, dir)
	rs, err = localdb.StartRsyslog(context.Background(), dir, 0, certFile, keyFile)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rs.Stop() })
	return dir, certFile, keyFile, pool, rs
}

type received struct {
	Pri, Version, Timestamp, Hostname, App, ProcID, MsgID, SD, Msg string
}

func readReceived(t *testing.T, path string) []received {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []received
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Pri, Version, Timestamp, Hostname, App, Procid, Msgid, Sd, Msg string
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		out = append(out, received{r.Pri, r.Version, r.Timestamp, r.Hostname, r.App, r.Procid, r.Msgid, r.Sd, r.Msg})
	}
	return out
}

func sealed(t *testing.T, typ string, seq uint64, p schemas.Payload) schemas.Event {
	e := schemas.Event{ID: typ + "-" + string(rune('0'+seq)), Type: typ, Code: schemas.Codes[typ], Time: time.Date(2026, 11, 22, 5, 1, 2, 123456789, time.UTC),
		SessionID: "s1", Seq: seq, Resource: "demo", Identity: schemas.Identity{Subject: "svc-orders", Kind: "service"}, Payload: p.AppendJSON(nil)}
	h, err := e.ComputeHash()
	require.NoError(t, err)
	e.Hash = h
	return e
}

// A real rsyslogd over TLS parses every event as a valid RFC 5424 message: priority by
// event, the event's time, hostname, app, the type as MSGID, the event JSON unchanged as
// MSG; an event too big for the receiver arrives as a stub naming it; a receiver that goes
// away and comes back misses nothing.
func TestSyslogSinkDeliversRFC5424OverTLSToRsyslog(t *testing.T) {
	dir, certFile, keyFile, pool, rs := startRsyslog(t)
	ctx := context.Background()

	b := bustest.Connect(t)
	publish := func(evs ...schemas.Event) {
		var data []byte
		for i := range evs {
			if i > 0 {
				data = append(data, '\n')
			}
			data = evs[i].AppendJSON(data)
		}
		_, err := b.JS.Publish(ctx, bus.AuditSubject("demo", "s1", "batch"), data, jetstream.WithMsgID(evs[0].ID))
		require.NoError(t, err)
	}
	query := sealed(t, schemas.TypeDbQuery, 1, &schemas.DbQuery{QueryID: 1, SQL: `select "naïve" from t where x = 'a\b' -- ✓`, Protocol: "simple"})
	deny := sealed(t, schemas.TypeDecision, 2, &schemas.Decision{QueryID: 1, Effect: "deny", Policy: "p", Rule: "no-drop", Reason: "never"})
	big := sealed(t, schemas.TypeDbResultChunk, 3, &schemas.DbQuery{SQL: strings.Repeat("x", 5000)})
	publish(query, deny)
	publish(big)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	to := &sinks.Syslog{Address: rs.Addr(), TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, Facility: 13, Hostname: "gw-1", MaxMessage: 4096}
	s := &sinks.Sink{Name: "rsyslog", To: to, BatchSize: 10, Flush: 50 * time.Millisecond, Log: log}
	require.NoError(t, s.Start(ctx, b.JS))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; to.Close() })

	require.Eventually(t, func() bool { return len(readReceived(t, rs.Out)) == 3 }, 20*time.Second, 20*time.Millisecond)
	got := readReceived(t, rs.Out)
	// audit (13) * 8 + info (6) = 110; + warning (4) = 108.
	require.Equal(t, received{"110", "1", "2026-11-22T05:01:02.123456Z", "gw-1", "gatehouse", "-", "db.query", "-", string(query.AppendJSON(nil))}, got[0])
	require.Equal(t, "108", got[1].Pri)
	require.Equal(t, "decision", got[1].MsgID)
	require.Equal(t, string(deny.AppendJSON(nil)), got[1].Msg)
	var stub map[string]any
	require.NoError(t, json.Unmarshal([]byte(got[2].Msg), &stub))
	require.Equal(t, map[string]any{"id": big.ID, "type": "db.result.chunk", "session_id": "s1", "seq": 3.0, "truncated": true, "bytes": float64(len(big.AppendJSON(nil)))}, stub)

	// The receiver goes away; events published meanwhile arrive once it is back.
	require.NoError(t, rs.Stop())
	later := []schemas.Event{sealed(t, schemas.TypeAuthFailed, 4, &schemas.AuthFailed{Protocol: "postgres", ClientUser: "svc-orders"}), sealed(t, schemas.TypeSessionEnd, 5, &schemas.SessionEnd{Reason: "client"})}
	publish(later[0])
	publish(later[1])
	time.Sleep(500 * time.Millisecond) // the sink retries against nobody
	rs2, err := localdb.StartRsyslog(ctx, dir, rs.Port, certFile, keyFile)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rs2.Stop() })
	rs = rs2
	require.Eventually(t, func() bool {
		ids := map[string]bool{}
		for _, r := range readReceived(t, rs.Out) {
			var e struct{ ID string }
			_ = json.Unmarshal([]byte(r.Msg), &e)
			ids[e.ID] = true
		}
		return ids[later[0].ID] && ids[later[1].ID]
	}, 30*time.Second, 50*time.Millisecond)
	for _, r := range readReceived(t, rs.Out) {
		if r.MsgID == "auth.failed" {
			require.Equal(t, "108", r.Pri)
		}
	}
}

// A receiver whose certificate does not verify gets nothing.
func TestSyslogSinkRefusesAnUnverifiedReceiver(t *testing.T) {
	_, _, _, _, rs := startRsyslog(t)
	to := &sinks.Syslog{Address: rs.Addr(), TLS: &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}, Hostname: "gw"}
	err := to.Deliver(context.Background(), &sinks.Batch{})
	require.ErrorContains(t, err, "certificate")
}
