package integration

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/seal"
)

func freePort(t *testing.T) string {
	p, err := localdb.FreePort()
	require.NoError(t, err)
	return fmt.Sprint(p)
}

// TestSplitProcesses runs each component as its own `gatehouse run --target=...` process
// against one external NATS, and checks that they behave as target=all does.
func TestSplitProcesses(t *testing.T) {
	runSplit(t, bustest.StartServer(t), nil)
}

// TestSplitTwoCopies runs two copies of every component (the dev issuer aside): decisions,
// approval claims and decisions are answered by either copy of a queue group, the ingest
// copies share the durable consumer, both sweep and retention is claimed by one; the
// acceptance sees one deployment, with every event once and every session verified.
func TestSplitTwoCopies(t *testing.T) {
	runSplitCopies(t, bustest.StartServer(t), nil, 2)
}

// runSplit runs the acceptance with every component in its own process against the NATS
// at natsURL; envFor, when set, adds a target's environment (its NATS credentials).
func runSplit(t *testing.T, natsURL string, envFor func(target string) []string) {
	runSplitCopies(t, natsURL, envFor, 1)
}

// runSplitCopies is runSplit with copies processes of each component; the acceptance
// talks to the first copy's APIs and PostgreSQL listener.
func runSplitCopies(t *testing.T, natsURL string, envFor func(target string) []string, copies int) {
	pg, pwFile := demoPostgres(t)
	ch := chtest.Start(t)
	issuerPort, pgPort := freePort(t), freePort(t)
	issuer := "http://127.0.0.1:" + issuerPort
	common := []string{
		"GATEHOUSE_NATS_URL=" + natsURL,
		"GATEHOUSE_CLICKHOUSE_ADDR=" + ch.Addr(),
		"GATEHOUSE_DEMO_PG_ADDR=" + pg.Addr(),
		"GATEHOUSE_DEMO_PG_PASSWORD_FILE=" + pwFile,
		"GATEHOUSE_DEV_ISSUER_URL=" + issuer + "/dev/oidc",
		"GATEHOUSE_PG_LISTEN=127.0.0.1:" + pgPort, "GATEHOUSE_SSH_LISTEN=127.0.0.1:0", "GATEHOUSE_HTTP_PROXY_LISTEN=127.0.0.1:0",
	}
	keyFile := filepath.Join(t.TempDir(), "audit-signing.key")
	_, err := seal.LoadKey(keyFile, true)
	require.NoError(t, err)
	common = append(common, "GATEHOUSE_AUDIT_SIGNING_KEY="+keyFile)
	cfg, err := filepath.Abs("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	dirs := map[string]string{}
	bases := map[string]string{}
	var copiesReady []string
	for _, target := range []string{"dev-issuer", "policy", "approvals", "notifier", "sinks", "proxy-postgres", "proxy-ssh", "ingest", "query"} {
		port := freePort(t)
		if target == "dev-issuer" {
			port = issuerPort
		}
		dirs[target] = t.TempDir()
		bases[target] = "http://127.0.0.1:" + port
		env := append(append([]string{}, common...), "GATEHOUSE_HTTP_LISTEN=127.0.0.1:"+port, "GATEHOUSE_DATA_DIR="+dirs[target])
		if envFor != nil {
			env = append(env, envFor(target)...)
		}
		startProcess(t, env, "run", "--config", cfg, "--target="+target)
		for i := 1; i < copies && target != "dev-issuer"; i++ {
			extra := freePort(t)
			env := append(append([]string{}, common...), "GATEHOUSE_HTTP_LISTEN=127.0.0.1:"+extra, "GATEHOUSE_DATA_DIR="+t.TempDir(),
				"GATEHOUSE_PG_LISTEN=127.0.0.1:"+freePort(t)) // the later setting wins
			if envFor != nil {
				env = append(env, envFor(target)...)
			}
			startProcess(t, env, "run", "--config", cfg, "--target="+target)
			copiesReady = append(copiesReady, "http://127.0.0.1:"+extra)
		}
	}
	for _, base := range copiesReady {
		waitReady(t, base)
	}
	for _, base := range bases {
		waitReady(t, base)
	}
	g := &gateway{pgHost: "127.0.0.1", pgPort: pgPort, api: bases["query"], ingestAPI: bases["ingest"], policyAPI: bases["policy"], approvalsAPI: bases["approvals"], issuer: issuer,
		chAddr: ch.Addr(), chDB: "gatehouse", backendPW: readFile(t, pwFile), pg: pg}
	exercise(t, g, dirs["dev-issuer"])
}
