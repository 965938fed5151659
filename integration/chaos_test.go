package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/dev/localssh"
	"github.com/gatehouse/gatehouse/services/dev/localssh/sshtest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// The chaos suite runs the split deployment as processes (three NATS nodes, policy, approvals,
// notifier, ingest, query, proxy-postgres and sinks each its own `gatehouse run`), puts a
// steady load of numbered SQL statements through the proxy, injects one fault after
// another, and then checks the invariants over everything the load did (chaos_check_test.go).
// The bounded run is part of `make test`; `make chaos` sets GATEHOUSE_CHAOS=full: longer
// outages, more clients, and the soak (chaos_soak_test.go). docs/chaos.md says what runs.

// chaosOptions size a run.
type chaosOptions struct {
	full        bool
	clients     int           // load clients, half on the buffered resource, half on the strict one
	down        time.Duration // how long a killed component stays down
	chDown      time.Duration // how long ClickHouse stays down
	cut         time.Duration // how long the proxy's link to NATS stays cut
	partition   time.Duration // how long a NATS node stays partitioned away
	sinkFault   time.Duration // how long a SIEM sink is dead, or slow
	diskFull    time.Duration // how long the spool's disk stays full
	recoverIn   time.Duration // the bound on the load's recovery after a fault is removed
	soak        time.Duration // 0: no soak
	soakClients int
	report      string // the run's report directory
}

func chaosOptionsFromEnv(t *testing.T) chaosOptions {
	o := chaosOptions{clients: 4, down: 3 * time.Second, chDown: 10 * time.Second, cut: 5 * time.Second,
		sinkFault: 5 * time.Second, diskFull: 3 * time.Second, recoverIn: 90 * time.Second, partition: 10 * time.Second}
	if os.Getenv("GATEHOUSE_CHAOS") == "full" {
		o.full = true
		// The cut outlasts audit.offline_limit (1m): new sessions are then refused.
		o.clients, o.down, o.chDown, o.cut, o.sinkFault, o.diskFull = 8, 15*time.Second, time.Minute, 90*time.Second, 30*time.Second, 15*time.Second
		o.soak, o.soakClients = 10*time.Minute, 1000
		o.partition = time.Minute
	}
	envDuration(t, "GATEHOUSE_CHAOS_SOAK", &o.soak)
	if v := os.Getenv("GATEHOUSE_CHAOS_SOAK_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "GATEHOUSE_CHAOS_SOAK_SESSIONS")
		o.soakClients = n
	}
	if v := os.Getenv("GATEHOUSE_CHAOS_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "GATEHOUSE_CHAOS_CLIENTS")
		o.clients = max(2, n)
	}
	envDuration(t, "GATEHOUSE_CHAOS_CH_DOWN", &o.chDown)
	o.report = os.Getenv("GATEHOUSE_CHAOS_REPORT")
	if o.report == "" {
		dir, err := os.MkdirTemp("", "gatehouse-chaos-")
		require.NoError(t, err)
		o.report = dir
	}
	require.NoError(t, os.MkdirAll(o.report, 0o755))
	t.Logf("chaos report directory: %s", o.report)
	return o
}

func envDuration(t *testing.T, name string, d *time.Duration) {
	if v := os.Getenv(name); v != "" {
		var err error
		*d, err = time.ParseDuration(v)
		require.NoError(t, err, name)
	}
}

// chaosCluster is the split deployment, every component a process the test can kill and
// start again on the same data directory and ports.
type chaosCluster struct {
	t      *testing.T
	cfg    string       // the run's config file
	common []string     // every process's environment
	nats   *natsCluster // the three NATS nodes and the links to and between them
	ch     *localdb.ClickHouse
	conn   driver.Conn // ClickHouse, for the checks
	pgPort string
	// httpProxy is proxy-http's base URL (https), backend the service behind it.
	httpProxy string
	backend   *chaosBackend
	// sshProxy is proxy-ssh's address; sshLog the file on the SSH host where the load's
	// commands record themselves.
	sshProxy string
	sshLog   string
	issuer   string
	auditor  string // a token of the auditors group
	reader   string // a token of orders-readers (the load)

	sinks    map[string]*sinkReceiver
	spoolDir string // the proxy's audit.spool_dir
	spoolFS  bool   // spoolDir is a tmpfs of its own (the disk-full fault runs)

	mu    sync.Mutex
	procs map[string]*process
	dirs  map[string]string // data directory by target
	bases map[string]string // HTTP base URL by target
}

// chaosTargets are the components the suite runs, each in its own process, in start order.
var chaosTargets = []string{"nats-1", "nats-2", "nats-3", "dev-issuer", "policy", "approvals", "notifier", "ingest", "query", "sinks", "proxy-postgres", "proxy-http", "proxy-ssh"}

// chaosConfig writes the run's config: the demo config plus NATS as a cluster (a node's
// process runs from its nats.server_config; every component connects to all three, each
// stream and bucket with three replicas),
// a second resource on the same database with audit: strict (demo stays buffered), quick
// gateway liveness and sweeping, the spool directory, and three SIEM sinks.
func chaosConfig(t *testing.T, sinks map[string]*sinkReceiver, backend string, sshd *localssh.SSHD) string {
	src, err := os.ReadFile("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	c := string(src)
	replace := func(old, new string) {
		t.Helper()
		require.Contains(t, c, old, "deploy/gatehouse.dev.yaml changed: the chaos config needs %q", old)
		c = strings.Replace(c, old, new, 1)
	}
	replace("nats:\n  url: ${GATEHOUSE_NATS_URL:-}\n", "nats:\n  url: ${GATEHOUSE_NATS_URL:-}\n  server_config: ${GATEHOUSE_NATS_SERVER_CONFIG:-}\n  replicas: 3\n")
	replace("audit:\n  mode: buffered\n", "audit:\n  mode: buffered\n  gateway_timeout: 10s\n  sweep_interval: 1s\n  spool_dir: ${GATEHOUSE_SPOOL_DIR:-}\n")
	replace("      sslmode: prefer\npolicies:\n", `      sslmode: prefer
  - name: demo-strict
    type: postgres
    labels: {env: dev, team: orders}
    audit: strict
    postgres:
      address: ${GATEHOUSE_DEMO_PG_ADDR:-}
      database: demo
      user: gatehouse_demo
      password_file: ${GATEHOUSE_DEMO_PG_PASSWORD_FILE:-}
      sslmode: prefer
policies:
`)
	replace("  - name: demo-orders\n    resources: [demo]\n", "  - name: demo-orders\n    resources: [demo, demo-strict]\n")
	replace("\npolicies:\n", "\n"+fmt.Sprintf(chaosHTTPResources, backend, chaosBackendCredential)+
		fmt.Sprintf(chaosSSHResources, sshd.Addr(), sshd.ClientKeyFile, sshd.HostKeyLine())+"policies:\n"+chaosHTTPPolicy+chaosSSHPolicy)
	c += "sinks:\n"
	for _, name := range []string{"siem-good", "siem-dead", "siem-slow"} {
		c += fmt.Sprintf("  - {name: %s, type: http, url: %q, flush: 200ms}\n", name, sinks[name].URL())
	}
	f := filepath.Join(t.TempDir(), "gatehouse-chaos.yaml")
	require.NoError(t, os.WriteFile(f, []byte(c), 0o644))
	return f
}

// startChaosCluster starts PostgreSQL, ClickHouse and every component.
func startChaosCluster(t *testing.T) *chaosCluster {
	pg, pwFile := demoPostgres(t)
	ch := chtest.Start(t)
	c := &chaosCluster{t: t, ch: ch, procs: map[string]*process{}, dirs: map[string]string{}, bases: map[string]string{},
		sinks: map[string]*sinkReceiver{}}
	for _, name := range []string{"siem-good", "siem-dead", "siem-slow"} {
		c.sinks[name] = newSinkReceiver(t)
	}
	c.backend = newChaosBackend(t)
	sshtest.Require(t)
	sshd := sshtest.Start(t)
	c.sshLog = filepath.Join(t.TempDir(), "commands.log")
	c.cfg = chaosConfig(t, c.sinks, c.backend.srv.URL, sshd)
	c.nats = newNATSCluster(t, c.dirs)
	issuerPort := freePort(t)
	c.pgPort = freePort(t)
	c.httpProxy = "https://127.0.0.1:" + freePort(t)
	c.sshProxy = "127.0.0.1:" + freePort(t)
	c.issuer = "http://127.0.0.1:" + issuerPort
	keyFile := filepath.Join(t.TempDir(), "audit-signing.key")
	_, err := seal.LoadKey(keyFile, true)
	require.NoError(t, err)
	c.common = []string{
		"GATEHOUSE_CLICKHOUSE_ADDR=" + ch.Addr(),
		"GATEHOUSE_DEMO_PG_ADDR=" + pg.Addr(),
		"GATEHOUSE_DEMO_PG_PASSWORD_FILE=" + pwFile,
		"GATEHOUSE_DEV_ISSUER_URL=" + c.issuer + "/dev/oidc",
		"GATEHOUSE_PG_LISTEN=127.0.0.1:" + c.pgPort, "GATEHOUSE_SSH_LISTEN=127.0.0.1:0", "GATEHOUSE_HTTP_PROXY_LISTEN=127.0.0.1:0",
		"GATEHOUSE_AUDIT_SIGNING_KEY=" + keyFile,
	}
	c.spoolDir, c.spoolFS = spoolTmpfs(t)
	for _, n := range c.nats.nodes {
		c.bases[n.name] = "http://127.0.0.1:" + freePort(t)
	}
	c.startNATS()
	for _, target := range chaosTargets {
		if isNATSTarget(target) {
			continue
		}
		c.dirs[target] = t.TempDir()
		port := freePort(t)
		if target == "dev-issuer" {
			port = issuerPort
		}
		c.bases[target] = "http://127.0.0.1:" + port
		c.start(target)
	}
	waitListening(t, strings.TrimPrefix(c.httpProxy, "https://"))
	waitListening(t, c.sshProxy)
	conn, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: "default"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	c.conn = conn
	g := &gateway{issuer: c.issuer}
	c.auditor = g.token(t, "auditor", "auditors")
	c.reader = g.token(t, "svc-orders", "orders-readers")
	return c
}

// spoolTmpfs mounts a tmpfs of its own for the proxy's spool, so that the disk-full fault
// fills that and nothing else; when mounting is refused, the spool stays in the data
// directory and the fault is skipped. GATEHOUSE_CHAOS_SPOOL_SIZE sets its size (default
// 64m: the spool's journal grows a segment to 32 MiB before it removes any, see
// docs/chaos.md).
func spoolTmpfs(t *testing.T) (string, bool) {
	dir := t.TempDir()
	size := os.Getenv("GATEHOUSE_CHAOS_SPOOL_SIZE")
	if size == "" {
		size = "64m"
	}
	mnt := filepath.Join(dir, "spool")
	require.NoError(t, os.Mkdir(mnt, 0o700))
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", mnt); err != nil {
		t.Logf("disk-full fault skipped: mount -t tmpfs refused (%v: %s); the spool stays on the data directory's disk", err, out)
		return mnt, false
	}
	t.Cleanup(func() {
		if out, err := runCmd("umount", "-l", mnt); err != nil {
			t.Logf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt, true
}

// env is the environment of target's process.
func (c *chaosCluster) env(target string) []string {
	env := append([]string{}, c.common...)
	env = append(env, "GATEHOUSE_HTTP_LISTEN="+strings.TrimPrefix(c.bases[target], "http://"), "GATEHOUSE_DATA_DIR="+c.dirs[target])
	switch {
	case isNATSTarget(target):
		env = append(env, "GATEHOUSE_NATS_URL=", "GATEHOUSE_NATS_SERVER_CONFIG="+c.nats.node(target).conf)
	case target == "proxy-postgres":
		// The proxy reaches NATS through links of its own, which the test can cut.
		env = append(env, "GATEHOUSE_NATS_URL="+c.nats.proxyURL(), "GATEHOUSE_SPOOL_DIR="+c.spoolDir)
	case target == "proxy-http" || target == "proxy-ssh":
		env = append(env, "GATEHOUSE_NATS_URL="+c.nats.componentURL(), "GATEHOUSE_SPOOL_DIR="+filepath.Join(c.dirs[target], "spool"),
			"GATEHOUSE_HTTP_PROXY_LISTEN="+strings.TrimPrefix(c.httpProxy, "https://"), "GATEHOUSE_SSH_LISTEN="+c.sshProxy)
	default:
		env = append(env, "GATEHOUSE_NATS_URL="+c.nats.componentURL())
	}
	return env
}

// start starts target's process and waits until it is ready (a NATS node: answers
// JetStream requests; the others: /readyz answers 200). It returns how long that took.
func (c *chaosCluster) start(target string) time.Duration {
	c.t.Helper()
	began := time.Now()
	c.spawn(target)
	if n := c.nats.node(target); n != nil {
		c.waitNATS(n)
	} else {
		waitReady(c.t, c.bases[target])
	}
	return time.Since(began)
}

// spawn starts target's process.
func (c *chaosCluster) spawn(target string) {
	c.t.Helper()
	run := target
	if isNATSTarget(target) {
		run = "nats"
	}
	p := startProcess(c.t, c.env(target), "run", "--config", c.cfg, "--target="+run)
	c.mu.Lock()
	c.procs[target] = p
	c.mu.Unlock()
}

// kill kills target's process (kill -9).
func (c *chaosCluster) kill(target string) {
	c.mu.Lock()
	p := c.procs[target]
	c.mu.Unlock()
	p.kill()
}

// proc is target's current process.
func (c *chaosCluster) proc(target string) *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[target]
}

// TestChaos is the fault-injection suite: bounded by default (part of `make test`), full
// with GATEHOUSE_CHAOS=full (`make chaos`).
func TestChaos(t *testing.T) {
	o := chaosOptionsFromEnv(t)
	began := time.Now()
	c := startChaosCluster(t)
	load := startLoad(t, c, o.clients)
	load.waitAnswered(t, 50, 2*time.Minute)
	phases := []string{"setup " + time.Since(began).Round(time.Second).String()}
	mark := time.Now()

	var results []faultResult
	for _, f := range chaosFaults(c, o) {
		if f.skip != "" {
			results = append(results, faultResult{name: f.name, outcome: "skipped: " + f.skip})
			t.Logf("fault %s: skipped: %s", f.name, f.skip)
			continue
		}
		r := runFault(t, c, load, o, f)
		results = append(results, r)
		t.Logf("fault %s: %s", f.name, r.summary())
	}
	// After the last fault every client, of every kind, is answered again.
	last := time.Now()
	if back, ok := load.recoveredAfter(last, o.recoverIn, func(*loadClient) bool { return true }); ok {
		phases = append(phases, "every client answered after the faults within "+back.Round(10*time.Millisecond).String())
	} else {
		t.Errorf("not every client was answered within %s after the faults: %v", o.recoverIn, load.errorsSince(last))
	}
	load.stop()
	phases = append(phases, "faults "+time.Since(mark).Round(time.Second).String())
	mark = time.Now()
	inv := checkInvariants(t, c, load, results)
	phases = append(phases, "checks "+time.Since(mark).Round(time.Second).String())
	var soak *soakResult
	if o.soak > 0 {
		mark = time.Now()
		soak = runSoak(t, c, o)
		phases = append(phases, "soak "+time.Since(mark).Round(time.Second).String())
	}
	// Every component stops as an operator stops it (SIGINT), in reverse start order; how
	// long each took goes into the report (a stop past 20 s is a kill).
	var stops []string
	for i := len(chaosTargets) - 1; i >= 0; i-- {
		target := chaosTargets[i]
		began := time.Now()
		c.proc(target).stop()
		stops = append(stops, fmt.Sprintf("%s %s", target, time.Since(began).Round(10*time.Millisecond)))
	}
	phases = append(phases, "stops: "+strings.Join(stops, ", "))
	writeChaosReport(t, o, results, inv, soak, load, phases)
	for _, r := range results {
		require.Empty(t, r.failures, "fault %s", r.name)
	}
	require.Empty(t, inv.failures, "invariants")
	if soak != nil {
		require.Empty(t, soak.failures, "soak")
	}
}

// runCmd runs a command and returns its combined output.
func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitFor polls cond every 100 ms until it holds or within passes; it returns how long it
// took and whether it held.
func waitFor(within time.Duration, cond func() bool) (time.Duration, bool) {
	began := time.Now()
	for {
		if cond() {
			return time.Since(began), true
		}
		if time.Since(began) > within {
			return time.Since(began), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chCount runs a count query against ClickHouse (-1 when it fails: ClickHouse may be down).
func (c *chaosCluster) chCount(ctx context.Context, q string, args ...any) int64 {
	var n uint64
	if err := c.conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return -1
	}
	return int64(n)
}
