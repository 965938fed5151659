package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// restartable is a gateway run as a process (`gatehouse run --target=all` on env), to be
// killed and started again on the same data directory, beside what outlives it: NATS,
// ClickHouse, the demo PostgreSQL and a development issuer in a process of its own (so
// that tokens stay valid across the gateway's restarts).
type restartable struct {
	env             []string
	base, pgPort    string
	g               *gateway
	auditor, reader string // tokens
	ch              driver.Conn
	src             string // deploy/gatehouse.dev.yaml
	natsAddr        string // host:port of the NATS server
}

// startRestartable starts what outlives the gateway; the gateway itself is started by the
// test with p.env and a config from p.config.
func startRestartable(t *testing.T) *restartable {
	pg, pwFile := demoPostgres(t)
	ch := chtest.Start(t)
	natsURL := bustest.StartServer(t)
	issuerPort, pgPort, httpPort := freePort(t), freePort(t), freePort(t)
	issuer := "http://127.0.0.1:" + issuerPort
	keyFile := filepath.Join(t.TempDir(), "audit-signing.key")
	_, err := seal.LoadKey(keyFile, true)
	require.NoError(t, err)
	common := []string{"GATEHOUSE_NATS_URL=" + natsURL, "GATEHOUSE_CLICKHOUSE_ADDR=" + ch.Addr(), "GATEHOUSE_DEMO_PG_ADDR=" + pg.Addr(),
		"GATEHOUSE_DEMO_PG_PASSWORD_FILE=" + pwFile, "GATEHOUSE_DEV_ISSUER_URL=" + issuer + "/dev/oidc", "GATEHOUSE_PG_LISTEN=127.0.0.1:" + pgPort,
		"GATEHOUSE_SSH_LISTEN=127.0.0.1:0", "GATEHOUSE_HTTP_PROXY_LISTEN=127.0.0.1:0", "GATEHOUSE_AUDIT_SIGNING_KEY=" + keyFile}
	src, err := os.ReadFile("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	p := &restartable{env: append(common[:len(common):len(common)], "GATEHOUSE_DATA_DIR="+t.TempDir(), "GATEHOUSE_HTTP_LISTEN=127.0.0.1:"+httpPort),
		base: "http://127.0.0.1:" + httpPort, pgPort: pgPort, src: string(src), natsAddr: strings.TrimPrefix(natsURL, "nats://")}
	startProcess(t, append(common[:len(common):len(common)], "GATEHOUSE_HTTP_LISTEN=127.0.0.1:"+issuerPort, "GATEHOUSE_DATA_DIR="+t.TempDir()),
		"run", "--config", p.config(t, "buffered", "-1s"), "--target=dev-issuer")
	waitReady(t, issuer)
	p.g = &gateway{pgHost: "127.0.0.1", pgPort: pgPort, api: p.base, issuer: issuer}
	p.auditor = p.g.token(t, "auditor", "auditors")
	p.reader = p.g.token(t, "svc-orders", "orders-readers")
	p.ch, err = ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: "default"})
	require.NoError(t, err)
	t.Cleanup(func() { p.ch.Close() })
	return p
}

// config writes the demo config with an audit mode, a 3-s gateway timeout and a sweep
// interval (negative: this process does not sweep).
func (p *restartable) config(t *testing.T, mode, sweep string) string {
	f := filepath.Join(t.TempDir(), "gatehouse.yaml")
	c := strings.Replace(p.src, "audit:\n  mode: buffered\n", "audit:\n  mode: "+mode+"\n  gateway_timeout: 3s\n  sweep_interval: "+sweep+"\n", 1)
	require.NotEqual(t, p.src, c)
	require.NoError(t, os.WriteFile(f, []byte(c), 0o644))
	return f
}
