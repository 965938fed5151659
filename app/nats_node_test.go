package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
)

// TestNATSNodeFromServerConfig runs the nats target from nats.server_config: the node
// listens where the file says, stores where it says, and the process's own components
// reach it (in-process) and make their streams there.
func TestNATSNodeFromServerConfig(t *testing.T) {
	dir := t.TempDir()
	port := bustest.FreePort(t)
	conf := filepath.Join(dir, "nats.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("server_name: node-a\nlisten: 127.0.0.1:%d\nmax_payload: 8MB\njetstream { store_dir: %q }\n",
		port, filepath.Join(dir, "js"))), 0o600))
	cfg := &config.Config{DataDir: dir}
	cfg.NATS.ServerConfig = conf
	cfg.NATS.Replicas, cfg.NATS.StreamMaxBytes, cfg.NATS.DuplicateWindow = 1, 1<<20, time.Minute
	a := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node := a.natsService()
	require.NoError(t, node.Start(ctx))
	defer func() { require.NoError(t, node.Stop(ctx)) }()
	require.Equal(t, fmt.Sprintf("nats://127.0.0.1:%d", port), a.natsURL)
	require.Equal(t, "node-a", a.nats.Name())

	b := a.busService()
	require.NoError(t, b.Start(ctx))
	defer func() { require.NoError(t, b.Stop(ctx)) }()
	_, err := a.bus.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err, "the bus made its streams on the node")
	require.DirExists(t, filepath.Join(dir, "js", "jetstream"), "the node stores where its file says")
}
