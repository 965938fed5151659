package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// exercise runs the walking skeleton's acceptance against a running gateway: real clients
// through the proxy, policy decisions, token checks, and the audit trail through the API.
func exercise(t *testing.T, g *gateway, devKeyDir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now().Add(-time.Minute)
	svc := g.token(t, "svc-orders", "orders-readers")

	// psql: an allowed read returns rows.
	out, errOut, err := g.psql(t, svc, "svc-orders", "select * from orders order by id limit 3")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "analytical engine")
	require.Contains(t, out, "(3 rows)")

	// A forbidden statement is refused with 42501 and the reason; nothing reaches the backend.
	_, errOut, err = g.psql(t, svc, "svc-orders", "drop table orders")
	require.Error(t, err)
	require.Contains(t, errOut, "42501")
	require.Contains(t, errOut, "no rule allows drop_table on resource demo")
	direct, err := pgconn.Connect(ctx, g.pg.SuperuserConnString("demo"))
	require.NoError(t, err)
	res, err := direct.Exec(ctx, "select count(*) from orders").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "10", string(res[0].Rows[0][0]), "orders must still exist")
	direct.Close(ctx)

	// Tokens: wrong, forged, expired and foreign ones get 28P01 naming the failed check.
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	forger, err := identity.NewDevIssuer(g.issuer+identity.DevIssuerPath, t.TempDir(), discard)
	require.NoError(t, err)
	forged, err := forger.Mint(identity.TokenRequest{Subject: "svc-orders", Groups: []string{"orders-readers"}})
	require.NoError(t, err)
	real, err := identity.NewDevIssuer(g.issuer+identity.DevIssuerPath, devKeyDir, discard)
	require.NoError(t, err)
	expired, err := real.MintAt(identity.TokenRequest{Subject: "svc-orders", TTL: time.Minute}, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	foreignIss, err := identity.NewDevIssuer("https://idp.elsewhere.example", t.TempDir(), discard)
	require.NoError(t, err)
	foreign, err := foreignIss.Mint(identity.TokenRequest{Subject: "svc-orders"})
	require.NoError(t, err)
	for name, tc := range map[string]struct{ token, want string }{
		"not a token": {"hunter2", "password is not a token"},
		"forged":      {forged, "signature does not verify"},
		"expired":     {expired, "token expired at"},
		"foreign":     {foreign, `issuer "https://idp.elsewhere.example" is not trusted`},
	} {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=svc-orders password=%s sslmode=disable", g.pgHost, g.pgPort, tc.token))
		if err == nil {
			c.Close(ctx)
		}
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "%s: %v", name, err)
		require.Equal(t, "28P01", pe.Code, name)
		require.Contains(t, pe.Message, tc.want, name)
	}

	// pgx, extended protocol, as the on-call DBA: prepared statements run and are audited on
	// every execution; DROP DATABASE is refused by rule and the connection stays usable.
	dba := g.token(t, "dba-oncall", "dba")
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=dba-oncall password=%s sslmode=disable", g.pgHost, g.pgPort, dba))
	require.NoError(t, err)
	var item string
	for i := 0; i < 2; i++ {
		require.NoError(t, conn.QueryRow(ctx, "select item from orders where id = $1", 2).Scan(&item))
		require.Equal(t, "bombe rotor", item)
	}
	_, err = conn.Exec(ctx, "drop database demo")
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "42501", pgErr.Code)
	require.Contains(t, pgErr.Message, "no-drop-database")
	require.Contains(t, pgErr.Message, "dropping a database is never allowed")
	var n int
	require.NoError(t, conn.QueryRow(ctx, "select count(*) from customers").Scan(&n))
	require.Equal(t, 5, n)
	var app string
	require.NoError(t, conn.QueryRow(ctx, "select application_name from pg_stat_activity where pid = pg_backend_pid()").Scan(&app))
	require.True(t, strings.HasPrefix(app, "gatehouse:dba-oncall"), "backend application_name %q names the caller", app)
	// pgx's largest statement (TestConnExecPreparedMaxNumberOfParams): 65,535 bind
	// parameters in 1 MB of text is decided and runs, rather than timing out.
	var values strings.Builder
	var args [][]byte
	values.WriteString("values")
	for i := 1; i <= 65535; i++ {
		if i > 1 {
			values.WriteString(", ")
		}
		fmt.Fprintf(&values, "($%d::text)", i)
		args = append(args, []byte(strconv.Itoa(i)))
	}
	big := conn.PgConn().ExecParams(ctx, values.String(), args, nil, nil, nil).Read()
	require.NoError(t, big.Err)
	require.Len(t, big.Rows, 65535)
	require.Equal(t, "65535", string(big.Rows[65534][0]))
	require.NoError(t, conn.Close(ctx))

	// The audit API: auditors only.
	code, _ := g.apiGet(t, "", "/api/v1/sessions")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body := g.apiGet(t, svc, "/api/v1/sessions")
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, string(body), "not in an auditor group")

	auditor := g.token(t, "auditor", "auditors")
	var list struct {
		Sessions []query.Session `json:"sessions"`
	}
	require.Eventually(t, func() bool {
		if err := g.cliJSON(t, auditor, &list, "sessions", "list", "--identity", "svc-orders"); err != nil {
			t.Log(err)
			return false
		}
		// Both sessions ended and the denied statement's events stored: with two ingest
		// copies a session's end can be stored before its earlier events.
		ended, denied := 0, 0
		for _, s := range list.Sessions {
			if s.End != nil {
				ended++
			}
			if s.Denied == 1 && s.Statements == 1 {
				denied++
			}
		}
		if ended < 2 || denied == 0 {
			t.Logf("sessions so far: %+v", list.Sessions)
		}
		return ended >= 2 && denied > 0
	}, 30*time.Second, 200*time.Millisecond, "svc-orders sessions never reached the audit store")
	var denied *query.Session
	for i, s := range list.Sessions {
		require.Equal(t, "svc-orders", s.Identity)
		require.Equal(t, "demo", s.Resource)
		if s.Denied == 1 {
			denied = &list.Sessions[i]
		}
	}
	require.NotNil(t, denied, "the session with the denied DROP is listed")
	require.Equal(t, uint64(1), denied.Statements)

	// Replay the DBA session: statements, decisions and results in order, chain intact.
	var dbaList struct {
		Sessions []query.Session `json:"sessions"`
	}
	var replay query.Replay
	require.Eventually(t, func() bool {
		if err := g.cliJSON(t, auditor, &dbaList, "sessions", "list", "--identity", "dba-oncall"); err != nil || len(dbaList.Sessions) == 0 || dbaList.Sessions[0].End == nil {
			t.Logf("dba sessions: %v %+v", err, dbaList.Sessions)
			return false
		}
		err := g.cliJSON(t, auditor, &replay, "sessions", "replay", dbaList.Sessions[0].ID)
		if err != nil {
			t.Logf("replay: %v", err)
			return false
		}
		// Whole once its chain holds and ends in the seal: with two ingest copies the end
		// can be stored while the other copy still holds earlier events in its batch. A
		// chain that stays broken fails below.
		n := len(replay.Events)
		if !replay.ChainOK || n == 0 || replay.Events[n-1].Type != schemas.TypeSessionSealed {
			t.Logf("replay not whole yet: %d events, chain ok %v %s", n, replay.ChainOK, replay.ChainError)
			return false
		}
		return true
	}, 30*time.Second, 200*time.Millisecond, "the dba session's replay never became whole (see the last log line)")
	require.True(t, replay.ChainOK, replay.ChainError)
	var queries []string
	var binds []schemas.DbBind
	var sawRow, sawDeny bool
	for i, e := range replay.Events {
		require.Equal(t, uint64(i+1), e.Seq)
		switch e.Type {
		case schemas.TypeDbQuery:
			var q schemas.DbQuery
			require.NoError(t, e.Decode(&q))
			queries = append(queries, q.SQL)
		case schemas.TypeDbBind:
			var b schemas.DbBind
			require.NoError(t, e.Decode(&b))
			binds = append(binds, b)
		case schemas.TypeDbResultChunk:
			var c schemas.DbResultChunk
			require.NoError(t, e.Decode(&c))
			for _, r := range c.Rows {
				if len(r) == 1 && r[0] != nil && *r[0] == "bombe rotor" {
					sawRow = true
				}
			}
		case schemas.TypeDecision:
			var d schemas.Decision
			require.NoError(t, e.Decode(&d))
			if d.Effect == "deny" {
				require.Equal(t, "no-drop-database", d.Rule)
				sawDeny = true
			}
		}
	}
	require.Equal(t, schemas.TypeSessionStart, replay.Events[0].Type)
	require.Equal(t, schemas.TypeSessionEnd, replay.Events[len(replay.Events)-2].Type)
	require.Equal(t, schemas.TypeSessionSealed, replay.Events[len(replay.Events)-1].Type, "the session's chain is sealed")
	require.Equal(t, 2, countOf(queries, "select item from orders where id = $1"), "each execution of the prepared statement is recorded: %q", queries)
	require.Contains(t, queries, "drop database demo")
	// Each execution records its parameters: pgx sends the int4 parameter in binary, which the
	// trail keeps as base64 of its four bytes.
	var withParam int
	for _, b := range binds {
		if len(b.Params) == 1 && b.Params[0] != nil && *b.Params[0] == "AAAAAg==" {
			withParam++
		}
	}
	require.Equal(t, 2, withParam, "binds: %+v", binds)
	require.True(t, sawRow, "result rows are recorded as sent")
	require.True(t, sawDeny)

	// No secret in the audit trail: neither the backend password nor any token.
	ch, err := ingest.Open(config.ClickHouse{Address: g.chAddr, Username: "default"})
	require.NoError(t, err)
	defer ch.Close()
	for name, secret := range map[string]string{"backend password": g.backendPW, "token": svc, "dba token": dba} {
		var hits uint64
		require.NoError(t, ch.QueryRow(ctx, "SELECT count() FROM "+g.chDB+".events WHERE position(payload, ?) > 0", secret).Scan(&hits))
		require.Zero(t, hits, "%s found in the audit trail", name)
	}
	var authFailed uint64
	require.Eventually(t, func() bool {
		return ch.QueryRow(ctx, "SELECT count() FROM "+g.chDB+".events WHERE type = 'auth.failed'").Scan(&authFailed) == nil && authFailed >= 4
	}, 20*time.Second, 200*time.Millisecond, "refused connections are audited (got %d)", authFailed)

	// The catalog the statements were resolved against, for policy tests: auditors and
	// admins only.
	var cat schemas.Catalog
	require.NoError(t, g.cliJSONAt(t, g.policyAPI, g.token(t, "auditor", "auditors"), &cat, "catalog", "get", "--resource", "demo"))
	require.Equal(t, "demo", cat.Resource)
	require.NotEmpty(t, cat.Version)
	require.True(t, slices.ContainsFunc(cat.Relations, func(r schemas.CatalogRelation) bool {
		return r.Schema == "public" && r.Name == "customers" && slices.Equal(r.Columns, []string{"id", "name", "email", "card_number"})
	}))
	require.Error(t, g.cliJSONAt(t, g.policyAPI, svc, &cat, "catalog", "get", "--resource", "demo"), "a caller's token does not read the catalog")

	liveChanges(t, g, svc, ch)
	heldForApproval(t, g)
	revocations(t, g)
	timeBoxedGrant(t, g)
	siemExport(t, g, ch)
	sessionSearch(t, g)
	evidenceReports(t, g)
	tamperEvidence(t, g, ch, began)
	retentionRun(t, g, ch)
}

// liveChanges changes policies and resources through the CLI and the API while sessions are
// open, as an operator would.
func liveChanges(t *testing.T, g *gateway, svc string, ch interface {
	QueryRow(ctx context.Context, query string, args ...any) driver.Row
}) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := g.token(t, "admin", "gatehouse-admins")
	gh := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append(args, "--url", g.policyAPI, "--token", admin), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	write := func(doc string) string {
		f := filepath.Join(t.TempDir(), "doc.yaml")
		require.NoError(t, os.WriteFile(f, []byte(doc), 0o600))
		return f
	}

	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=svc-orders password=%s sslmode=disable", g.pgHost, g.pgPort, svc))
	require.NoError(t, err)
	defer conn.Close(ctx)
	count := func() error {
		var n int
		return conn.QueryRow(ctx, "select count(*) from orders").Scan(&n)
	}
	require.NoError(t, count())

	// Only admins may change policies; admins and auditors read them.
	var stdout, stderr bytes.Buffer
	require.NotEqual(t, 0, cli.Main([]string{"policy", "get", "--url", g.policyAPI, "--token", svc}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "403 Forbidden: svc-orders is not in an admin or auditor group")

	// A policy that does not compile is refused whole, with CEL's message and position; the
	// policies in force stay.
	_, errOut, code := gh("policy", "apply", "-f", write(`
policies:
  - name: live
    resources: [demo]
    rules:
      - {name: fine, effect: allow, when: "false"}
      - {name: broken, effect: deny, when: '"x" in identity.groupz &&'}
`))
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, `policies[0].rules[1].when: policy "live" rule "broken"`)
	require.Contains(t, errOut, "<input>:1:26: Syntax error")
	require.NoError(t, count())

	// A change takes effect on the next statement of an open session, without a restart.
	out, errOut, code := gh("policy", "apply", "-f", write(`
policies:
  - name: live
    resources: [demo]
    rules:
      - {name: maintenance, effect: deny, when: '"public.orders" in request.sql.tables', reason: orders are closed for maintenance}
`))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "policy live created")
	applied := time.Now()
	var pgErr *pgconn.PgError
	require.Eventually(t, func() bool { return errors.As(count(), &pgErr) }, 10*time.Second, 5*time.Millisecond)
	t.Logf("the policy change reached the open session's next statement %v after the apply returned", time.Since(applied))
	require.Equal(t, "42501", pgErr.Code)
	require.Contains(t, pgErr.Message, "(policy live, rule maintenance): orders are closed for maintenance")
	out, _, code = gh("policy", "get")
	require.Equal(t, 0, code)
	require.Contains(t, out, "name: maintenance")
	// `policy test` without a file tries a statement against the policies in force (and
	// the catalog the proxy read), not a file that may differ from them.
	out, errOut, code = gh("policy", "test", "--as", "svc-orders", "--groups", "orders-readers", "--resource", "demo", "select count(*) from orders")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "policy test: policies from the gateway at "+g.policyAPI)
	require.Contains(t, out, "DENY by live/maintenance: orders are closed for maintenance")

	// And back.
	_, errOut, code = gh("policy", "apply", "-f", write(`
policies:
  - name: live
    resources: [demo]
    rules:
      - {name: maintenance, effect: deny, when: "false", reason: orders are open again}
`))
	require.Equal(t, 0, code, errOut)
	require.Eventually(t, func() bool { return count() == nil }, 10*time.Second, 5*time.Millisecond)

	// A new resource, and a policy for it, without a restart.
	_, errOut, code = gh("resource", "apply", "-f", write(fmt.Sprintf(`
resources:
  - name: reports
    type: postgres
    labels: {env: reporting}
    postgres: {address: "%s", database: demo, user: gatehouse_demo, password: %q, sslmode: disable}
`, g.pg.Addr(), g.backendPW)))
	require.Equal(t, 0, code, errOut)
	_, errOut, code = gh("policy", "apply", "-f", write(`
policies:
  - name: reports
    resources: [reports]
    rules:
      - {name: reporting-reads, effect: allow, when: 'resource.labels["env"] == "reporting" && request.sql.kinds.all(k, k == "select")'}
`))
	require.Equal(t, 0, code, errOut)
	require.Eventually(t, func() bool {
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=reports user=svc-orders password=%s sslmode=disable", g.pgHost, g.pgPort, svc))
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		var n int
		return c.QueryRow(ctx, "select count(*) from customers").Scan(&n) == nil && n == 5
	}, 10*time.Second, 20*time.Millisecond)
	out, _, code = gh("resource", "get")
	require.Equal(t, 0, code)
	require.Contains(t, out, "name: reports")
	require.NotContains(t, out, g.backendPW, "resource get redacts passwords")

	// Every change is an audit event: who, what, and the diff (passwords redacted).
	var payload, who string
	require.Eventually(t, func() bool {
		return ch.QueryRow(ctx, "SELECT payload, identity_sub FROM "+g.chDB+".events WHERE type = 'policy.changed' AND position(payload, 'orders are open again') > 0").Scan(&payload, &who) == nil
	}, 20*time.Second, 100*time.Millisecond)
	require.Equal(t, "admin", who)
	var pc schemas.PolicyChanged
	require.NoError(t, json.Unmarshal([]byte(payload), &pc))
	require.Equal(t, "policy", pc.Kind)
	require.Equal(t, "live", pc.Name)
	require.Equal(t, "updated", pc.Action)
	require.Equal(t, "api", pc.Source)
	require.Contains(t, pc.Diff, "-      reason: orders are closed for maintenance")
	require.Contains(t, pc.Diff, "+      reason: orders are open again")
	var hits uint64
	require.NoError(t, ch.QueryRow(ctx, "SELECT count() FROM "+g.chDB+".events WHERE position(payload, ?) > 0", g.backendPW).Scan(&hits))
	require.Zero(t, hits, "the resource's password is in no event")
	require.Eventually(t, func() bool {
		return ch.QueryRow(ctx, "SELECT count() FROM "+g.chDB+".events WHERE type = 'policy.changed' AND position(payload, 'resource/reports') > 0").Scan(&hits) == nil && hits > 0
	}, 20*time.Second, 100*time.Millisecond, "resource changes are recorded too")
}

func countOf(l []string, s string) int {
	n := 0
	for _, x := range l {
		if x == s {
			n++
		}
	}
	return n
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
