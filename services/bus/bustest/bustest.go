// Package bustest runs an embedded NATS server with JetStream for a test and connects to it.
package bustest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/embedded"
)

// StartServer starts NATS with JetStream in a temporary directory and returns its URL.
func StartServer(t testing.TB) string {
	t.Helper()
	srv, err := embedded.Start("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.URL()
}

// Connect starts a server and connects a Bus to it, with the streams created.
func Connect(t testing.TB) *bus.Bus {
	t.Helper()
	return ConnectURL(t, StartServer(t))
}

// ConnectURL connects a Bus to the server at url, with the streams created.
func ConnectURL(t testing.TB, url string) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, url, "test", bus.Options{StreamMaxBytes: 1 << 30}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(func() { b.NC.Close() })
	return b
}
