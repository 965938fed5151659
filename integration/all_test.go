package integration

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// TestAllInOneProcess runs every component in one process (target=all, NATS embedded) with
// the shipped demo config and policies.
func TestAllInOneProcess(t *testing.T) {
	g, dataDir := startAllInOne(t, "../deploy/gatehouse.dev.yaml")
	exercise(t, g, dataDir)

	// Every component's metrics are on /metrics.
	code, body := g.apiGet(t, "", "/metrics")
	require.Equal(t, 200, code)
	for _, m := range []string{`gatehouse_events_published_total{type="db.query"}`, `gatehouse_policy_decisions_total{effect="deny"}`,
		`gatehouse_policy_decisions_total{effect="allow"}`, "gatehouse_ingest_rows_total", "gatehouse_ingest_batch_size_bucket",
		"gatehouse_ingest_lag_events", `gatehouse_postgres_connections_total{outcome="expiry"}`} {
		require.Contains(t, string(body), m)
	}
}

// startAllInOne starts PostgreSQL with the demo database, ClickHouse, and every component
// in this process (target=all) with the config file at path; it returns the gateway and
// its data directory (which holds the dev issuer's key).
func startAllInOne(t *testing.T, path string) (*gateway, string) {
	pg, pwFile := demoPostgres(t)
	ch := chtest.Start(t)
	dataDir := t.TempDir()
	t.Setenv("GATEHOUSE_DATA_DIR", dataDir)
	t.Setenv("GATEHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_PG_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_SSH_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_HTTP_PROXY_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_CLICKHOUSE_ADDR", ch.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_ADDR", pg.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_PASSWORD_FILE", pwFile)
	cfg, err := config.Load(path)
	require.NoError(t, err)
	cfg.Audit.SigningKeyFile = filepath.Join(dataDir, "audit-signing.key")
	_, err = seal.LoadKey(cfg.Audit.SigningKeyFile, true)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	a := runApp(t, cfg, "all")
	host, port, err := net.SplitHostPort(a.ListenAddr("postgres"))
	require.NoError(t, err)
	base := "http://" + a.HTTPAddr()
	return &gateway{pgHost: host, pgPort: port, api: base, ingestAPI: base, policyAPI: base, approvalsAPI: base, issuer: base,
		chAddr: ch.Addr(), chDB: cfg.ClickHouse.Database, backendPW: readFile(t, pwFile), pg: pg}, dataDir
}
