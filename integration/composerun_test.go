package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/dev/localdb/pgtest"
)

// The variables the compose config expands to reach other containers and to pick its
// listeners; the test points them at its local servers and free loopback ports.
const (
	envNATS      = "GATEHOUSE_NATS_URL"
	envCH        = "GATEHOUSE_CLICKHOUSE_ADDR"
	envPG        = "GATEHOUSE_DEMO_PG_ADDR"
	envIssuer    = "GATEHOUSE_DEV_ISSUER_URL"
	envHTTP      = "GATEHOUSE_HTTP_LISTEN"
	envPGListen  = "GATEHOUSE_PG_LISTEN"
	initdbDir    = "/docker-entrypoint-initdb.d/"
	devIssuerSvc = "dev-issuer"
)

// TestComposeRuns runs docker-compose.yml without Docker: its demo init scripts against a
// real PostgreSQL initialised with the same authentication, run as the postgres image runs
// them; ClickHouse with the user the clickhouse image would make; then every service of the
// gatehouse image as a process with its command, environment and mounts (a bind mount is
// its file in the repository, a named volume one directory shared by the services that
// mount it, the image's WORKDIR a directory of the service's own), the one-shot services
// first. Through the published ports only: a statement through the PostgreSQL proxy, one
// held for approval and approved on the approvals API, the policy, revocation and retention
// APIs, and audit verify reporting every session sealed.
func TestComposeRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	compose := loadCompose(t)
	img := loadDockerfile(t, "../deploy/Dockerfile")

	pg := composePostgres(t, compose.Services["postgres"])
	ch, chUser := composeClickHouse(t, compose.Services["clickhouse"])
	natsURL := bustest.StartServer(t)

	// Named volumes are shared; the image's WORKDIR is each container's own.
	volumes := map[string]string{}
	for v := range compose.Volumes {
		volumes[v] = t.TempDir()
	}
	type running struct {
		name     string
		svc      composeService
		cfg      *config.Config
		listens  map[string]string // container port → local address
		httpPort string            // the container port of server.http_listen
		httpBase string
	}
	var names []string
	for name, svc := range compose.Services {
		if svc.Build != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	ports := map[string]map[string]string{}
	for _, name := range names {
		ports[name] = map[string]string{"http": "127.0.0.1:" + freePort(t), "postgres": "127.0.0.1:" + freePort(t)}
	}
	issuerURL := "http://" + ports[devIssuerSvc]["http"] + "/dev/oidc"

	// command builds a service's process: its entrypoint and command with container paths
	// mapped, and its environment (plus the test's addresses for a Gatehouse service).
	command := func(name string, svc composeService) (argv, env []string, cfg *config.Config) {
		paths := pathMap{}
		paths.add(img.Workdir, t.TempDir())
		for container, src := range img.Copied {
			if src == "/out/gatehouse" {
				paths.add(container, binary)
			}
		}
		for _, m := range svc.mounts(t) {
			if m.named {
				paths.add(m.target, volumes[m.source])
			} else {
				paths.add(m.target, repoPath(t, m.source))
			}
		}
		entry := svc.Entrypoint
		if len(entry) == 0 {
			entry = img.Entrypoint
		}
		for _, a := range append(append([]string{}, entry...), svc.Command...) {
			argv = append(argv, paths.translate(a))
		}
		for k, v := range svc.Environment {
			env = append(env, k+"="+v)
		}
		if svc.configPath() == "" {
			return argv, env, nil
		}
		// The config as the container sees it: its paths are the mounts'.
		mustNotSet(t, name, svc.Environment, envNATS, envCH, envPG, envIssuer, envHTTP, envPGListen)
		raw, err := os.ReadFile(paths.translate(svc.configPath()))
		require.NoError(t, err, name)
		local := filepath.Join(t.TempDir(), "gatehouse.yaml")
		require.NoError(t, os.WriteFile(local, []byte(paths.translate(string(raw))), 0o644))
		for i, a := range argv {
			if a == paths.translate(svc.configPath()) {
				argv[i] = local
			}
		}
		env = append(env, envNATS+"="+natsURL, envCH+"="+ch.Addr(), envPG+"="+pg.Addr(), envIssuer+"="+issuerURL,
			envHTTP+"="+ports[name]["http"], envPGListen+"="+ports[name]["postgres"])
		lookup := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			lookup[k] = v
		}
		text, err := config.Expand(paths.translate(string(raw)), func(k string) (string, bool) { v, ok := lookup[k]; return v, ok })
		require.NoError(t, err, name)
		cfg, err = config.Parse([]byte(text))
		require.NoError(t, err, name)
		require.NoError(t, cfg.Validate(), name)
		return argv, env, cfg
	}

	// One-shot services first, as depends_on ... service_completed_successfully has them.
	oneShot := map[string]bool{}
	for _, svc := range compose.Services {
		for dep, cond := range svc.DependsOn {
			if cond == "service_completed_successfully" {
				oneShot[dep] = true
			}
		}
	}
	for _, name := range names {
		if !oneShot[name] {
			continue
		}
		argv, env, _ := command(name, compose.Services[name])
		for range 2 { // the second start (docker compose up again) must succeed too
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "one-shot service %s: %s", name, out)
		}
	}
	var runs []*running
	for _, name := range names {
		if oneShot[name] {
			continue
		}
		svc := compose.Services[name]
		argv, env, cfg := command(name, svc)
		require.NotNil(t, cfg, "service %s runs no config", name)
		require.Equal(t, binary, argv[0], "service %s does not run the image's gatehouse", name)
		startProcess(t, env, argv[1:]...)
		r := &running{name: name, svc: svc, cfg: cfg, listens: map[string]string{}, httpBase: "http://" + ports[name]["http"]}
		// Each listener the compose config names, at the address the test gave it.
		composeCfg := composeConfig(t, name, svc)
		test := map[string]string{}
		for _, l := range listeners(cfg, svc.targets()) {
			test[l.key] = l.addr
		}
		for _, l := range listeners(composeCfg, svc.targets()) {
			port, _ := portOf(t, l.addr)
			if l.key == "server.http_listen" {
				r.httpPort = port
			}
			require.Contains(t, []string{ports[name]["http"], ports[name]["postgres"]}, test[l.key],
				"service %s: %s does not follow %s or %s, so the test cannot run it beside the others", name, l.key, envHTTP, envPGListen)
			r.listens[port] = test[l.key]
		}
		runs = append(runs, r)
	}
	for _, r := range runs {
		waitReady(t, r.httpBase)
	}

	// Published ports: each reaches a listener the service really opens.
	published := map[string]string{} // host port → local address
	publishedHTTP := map[string]string{}
	for _, r := range runs {
		for _, p := range r.svc.Ports {
			pp := parsePort(t, p)
			addr := r.listens[pp.containerPort]
			require.NotEmpty(t, addr, "service %s publishes %s, but opens nothing on container port %s", r.name, p, pp.containerPort)
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err, "service %s publishes %s, but nothing listens", r.name, p)
			c.Close()
			published[pp.hostPort] = addr
			if pp.containerPort == r.httpPort {
				publishedHTTP[pp.hostPort] = addr
			}
		}
	}
	// apiAt finds the published HTTP port that serves a route (401 without a token: it exists
	// and wants one; a port without it answers 404).
	client := &http.Client{Timeout: 10 * time.Second}
	apiAt := func(method, path string) string {
		for _, addr := range publishedHTTP {
			req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader("{}"))
			require.NoError(t, err)
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return "http://" + addr
			}
		}
		t.Fatalf("%s %s is on no published port of docker-compose.yml", method, path)
		return ""
	}
	policyAPI, resourceAPI := apiAt(http.MethodPut, "/api/v1/policies"), apiAt(http.MethodPut, "/api/v1/resources")
	revokeAPI, retentionAPI := apiAt(http.MethodPost, "/api/v1/revocations"), apiAt(http.MethodPost, "/api/v1/audit/retention")
	approvalsAPI, verifyAPI := apiAt(http.MethodGet, "/api/v1/approvals"), apiAt(http.MethodGet, "/api/v1/audit/verify")

	var pgPort string
	for host, addr := range published {
		if host == "6432" {
			_, pgPort, _ = net.SplitHostPort(addr)
		}
	}
	require.NotEmpty(t, pgPort, "the PostgreSQL proxy is not published on 6432")
	g := &gateway{pgHost: "127.0.0.1", pgPort: pgPort, issuer: "http://" + ports[devIssuerSvc]["http"], approvalsAPI: approvalsAPI}
	admin := g.token(t, "admin", "gatehouse-admins")
	auditor := g.token(t, "auditor", "auditors")
	gh := func(base, token string, args ...string) string {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append(args, "--url", base, "--token", token), &stdout, &stderr)
		require.Equal(t, 0, code, "gatehouse %s: %s", strings.Join(args, " "), stderr.String())
		return stdout.String()
	}

	// A statement through the proxy, with the backend credential the init script made.
	out, errOut, err := g.psql(t, g.token(t, "svc-orders", "orders-readers"), "svc-orders", "select item from orders order by id")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "analytical engine")

	// Held for approval, approved on the approvals API, then run.
	dba, approver := g.token(t, "dba-oncall", "dba"), g.token(t, "approver-1", "approvers")
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo user=dba-oncall password=%s sslmode=disable", pgPort, dba))
	require.NoError(t, err)
	stmt := "update customers set name = 'Ada (approved)' where id = 1"
	done := make(chan error, 1)
	go func() { _, err := conn.Exec(ctx, stmt).ReadAll(); done <- err }()
	var held approvals.Approval
	require.Eventually(t, func() bool {
		var list struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		require.NoError(t, g.cliJSONAt(t, approvalsAPI, approver, &list, "approvals", "list"))
		for _, a := range list.Approvals {
			if a.Request.Statement == stmt {
				held = a
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the statement was not held for approval")
	require.Contains(t, gh(approvalsAPI, approver, "approvals", "approve", held.ID), "approved")
	require.NoError(t, <-done)
	require.NoError(t, conn.Close(ctx))

	// The operator's APIs, on their published ports.
	policies := gh(policyAPI, admin, "policy", "get")
	f := filepath.Join(t.TempDir(), "policies.yaml")
	require.NoError(t, os.WriteFile(f, []byte(policies), 0o644))
	require.Contains(t, gh(policyAPI, admin, "policy", "apply", "-f", f), "no change")
	require.Contains(t, gh(resourceAPI, admin, "resource", "get"), "name: demo")
	require.Contains(t, gh(revokeAPI, admin, "revoke", "--identity", "svc-gone", "--reason", "compose test", "--for", "1h"), "revoked identity svc-gone")
	gh(retentionAPI, admin, "audit", "retention", "--dry-run")

	// Every session is in ClickHouse, ended and sealed with the key the keys service made,
	// and verify (on the published query API) finds no problem.
	chConn, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: chUser.name, Password: chUser.password})
	require.NoError(t, err)
	defer chConn.Close()
	require.Eventually(t, func() bool {
		var started, sealed uint64
		err := chConn.QueryRow(ctx, "SELECT countIf(type = 'session.start'), countIf(type = 'session.sealed') FROM gatehouse.events").Scan(&started, &sealed)
		return err == nil && started >= 2 && sealed == started
	}, time.Minute, 200*time.Millisecond, "not every session was sealed")
	var v query.Verification
	var stdout, stderr strings.Builder
	code := cli.Main([]string{"audit", "verify", "--json", "--url", verifyAPI, "--token", auditor}, &stdout, &stderr)
	require.Equal(t, 0, code, "audit verify: %s%s", stdout.String(), stderr.String())
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &v), stdout.String())
	require.GreaterOrEqual(t, v.Sessions, 2)
	require.Empty(t, v.Problems)
}

// composePostgres starts PostgreSQL initialised as the postgres service's image would be
// (initdb --auth=scram-sha-256: pgtest's), and runs the service's init scripts as the image's
// entrypoint runs them: psql -v ON_ERROR_STOP=1 as POSTGRES_USER with its password, the
// container's environment set; here over TCP.
func composePostgres(t *testing.T, svc composeService) *localdb.Postgres {
	t.Helper()
	require.Contains(t, svc.Environment["POSTGRES_INITDB_ARGS"], "--auth=scram-sha-256", "the test initialises PostgreSQL with scram-sha-256, as the postgres service must")
	user := svc.Environment["POSTGRES_USER"]
	if user == "" {
		user = "postgres"
	}
	require.Equal(t, "postgres", user, "pgtest's superuser is postgres")
	db := svc.Environment["POSTGRES_DB"]
	if db == "" {
		db = user
	}
	pg := pgtest.Start(t)
	env := append(os.Environ(), "PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", pg.Port), "PGPASSWORD="+pg.SuperuserPassword)
	for k, v := range svc.Environment {
		env = append(env, k+"="+v)
	}
	var scripts []mount
	for _, m := range svc.mounts(t) {
		if strings.HasPrefix(m.target, initdbDir) {
			require.False(t, m.named, "init scripts come from the repository")
			scripts = append(scripts, m)
		}
	}
	require.NotEmpty(t, scripts, "the postgres service runs no init script: there would be no demo database")
	sort.Slice(scripts, func(i, j int) bool { return scripts[i].target < scripts[j].target })
	for _, s := range scripts {
		var cmd *exec.Cmd
		switch filepath.Ext(s.target) {
		case ".sql":
			cmd = exec.Command("psql", "-v", "ON_ERROR_STOP=1", "--username", user, "--no-password", "--no-psqlrc", "--dbname", db, "-f", repoPath(t, s.source))
		case ".sh":
			cmd = exec.Command("sh", repoPath(t, s.source))
		default:
			t.Fatalf("init script %s: the test runs .sql and .sh only", s.target)
		}
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "init script %s failed as the postgres image would run it:\n%s", s.source, out)
	}
	return pg
}

// clickHouseUser is the user the clickhouse image makes from CLICKHOUSE_USER and
// CLICKHOUSE_PASSWORD.
type clickHouseUser struct{ name, password string }

// composeClickHouse starts ClickHouse with the user the clickhouse service's image would
// make (its default user has no network access there).
func composeClickHouse(t *testing.T, svc composeService) (*localdb.ClickHouse, clickHouseUser) {
	t.Helper()
	u := clickHouseUser{svc.Environment["CLICKHOUSE_USER"], svc.Environment["CLICKHOUSE_PASSWORD"]}
	require.NotEmpty(t, u.name, "the clickhouse image gives its default user no network access: set CLICKHOUSE_USER and CLICKHOUSE_PASSWORD")
	ch := chtest.Start(t)
	// ClickHouse reloads users.xml when it changes (within a few seconds).
	users := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>
    <%[1]s><password>%[2]s</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></%[1]s>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`, u.name, u.password)
	usersFile := filepath.Join(ch.Dir, "users.xml")
	require.NoError(t, os.WriteFile(usersFile, []byte(users), 0o644))
	// Old servers (Debian's 18.16) see a change by the modification time, in seconds.
	later := time.Now().Add(2 * time.Second)
	require.NoError(t, os.Chtimes(usersFile, later, later))
	require.Eventually(t, func() bool {
		c, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: u.name, Password: u.password})
		if err != nil {
			return false
		}
		defer c.Close()
		return c.Ping(context.Background()) == nil
	}, time.Minute, 200*time.Millisecond, "ClickHouse never accepted the compose user")
	return ch, u
}
