package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// fakeConn feeds a byte string to the startup code and swallows what it writes.
type fakeConn struct {
	r *bytes.Reader
}

func (f *fakeConn) Read(b []byte) (int, error)  { return f.r.Read(b) }
func (f *fakeConn) Write(b []byte) (int, error) { return len(b), nil }
func (f *fakeConn) Close() error                { return nil }
func (f *fakeConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6432} }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

type oneResource struct{}

func (oneResource) Resource(name string) (*config.Resource, bool) {
	if name != "demo" {
		return nil, false
	}
	return &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered", Postgres: &config.PostgresBackend{Address: "127.0.0.1:1"}}, true
}

func startupSeed(params map[string]string, version uint32, password string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: version, Parameters: params}).Encode(nil)
	if password != "" {
		b, _ = (&pgproto3.PasswordMessage{Password: password}).Encode(b)
	}
	return b
}

// FuzzStartup drives the whole startup negotiation (SSLRequest, GSSENCRequest,
// CancelRequest, StartupMessage, protocol negotiation, password) with arbitrary bytes: it
// must never panic, and must end with an error or a refusal, never a session.
func FuzzStartup(f *testing.F) {
	ssl := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), codeSSLRequest)
	gss := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), codeGSSENCRequest)
	cancel := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 16), codeCancelRequest), 42), 7)
	f.Add(append(ssl, startupSeed(map[string]string{"user": "u", "database": "demo"}, protocolV3, "a.b.c")...))
	f.Add(append(gss, startupSeed(map[string]string{"user": "u", "database": "demo", "_pq_.x": "1"}, protocolV3|2, "x")...))
	f.Add(cancel)
	f.Add(startupSeed(map[string]string{"user": "u", "database": "nope"}, protocolV3, ""))
	f.Add([]byte{0x16, 3, 1, 0, 5})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(Config{StartupTimeout: time.Second, MaxMessageBytes: 1 << 16}, oneResource{},
		identity.NewVerifier(context.Background(), nil, log), nil, nil, prometheus.NewRegistry(), log)
	f.Fuzz(func(t *testing.T, in []byte) {
		st, err := s.startup(&fakeConn{r: bytes.NewReader(in)})
		if err == nil {
			t.Fatalf("startup accepted %q without a valid token (state %+v)", in, st)
		}
	})
}

// remoteConn is a fakeConn whose peer is not on loopback (no packet is ever sent).
type remoteConn struct{ fakeConn }

func (r *remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 50000}
}

func TestTokensOverPlainTCPAreRefusedOffLoopback(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in := startupSeed(map[string]string{"user": "u", "database": "demo"}, protocolV3, "a.b.c")
	for _, allow := range []bool{false, true} {
		s := New(Config{StartupTimeout: time.Second, MaxMessageBytes: 1 << 16, AllowPlaintextTokens: allow}, oneResource{},
			identity.NewVerifier(context.Background(), nil, log), nil, nil, prometheus.NewRegistry(), log)
		_, err := s.startup(&remoteConn{fakeConn{r: bytes.NewReader(in)}})
		var se *startupError
		if !errors.As(err, &se) {
			t.Fatalf("allow=%v: %v", allow, err)
		}
		if !allow && (se.code != "28000" || se.check != "tls") {
			t.Fatalf("plain TCP from off loopback: got %s %s %q, want 28000 tls", se.code, se.check, se.msg)
		}
		if allow && se.check == "tls" {
			t.Fatalf("allow_plaintext_tokens did not allow: %q", se.msg)
		}
	}
	// From loopback the same startup gets as far as the token check.
	s := New(Config{StartupTimeout: time.Second, MaxMessageBytes: 1 << 16}, oneResource{},
		identity.NewVerifier(context.Background(), nil, log), nil, nil, prometheus.NewRegistry(), log)
	_, err := s.startup(&fakeConn{r: bytes.NewReader(in)})
	var se *startupError
	if !errors.As(err, &se) || se.code != "28P01" {
		t.Fatalf("loopback: %v", err)
	}
}
