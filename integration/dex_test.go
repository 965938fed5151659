package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/identity/dextest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// TestDexEndToEnd runs the gateway with Dex as the identity provider of its callers: Dex's
// opaque subjects are kept, and people are named by their email in rules, the session
// list, the audit store, the backend's application_name and revocations. (Auditor and
// admin tokens come from the development issuer: Dex's password database has no groups.)
func TestDexEndToEnd(t *testing.T) {
	dex := dextest.Start(t, dextest.Options{})
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
	cfg, err := config.Load("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfg.Audit.SigningKeyFile = filepath.Join(dataDir, "audit-signing.key")
	_, err = seal.LoadKey(cfg.Audit.SigningKeyFile, true)
	require.NoError(t, err)
	cfg.Identity.Issuers = []config.Issuer{{Issuer: dex.Issuer, Audiences: []string{dextest.Gateway}, GroupsClaim: "groups"}}
	cfg.Policies = append(cfg.Policies, config.Policy{Name: "people", Resources: []string{"demo"}, Rules: []config.Rule{{
		Name: "alice-reads-orders", Effect: "allow", Reason: "alice reads orders",
		When: `identity.name == "alice@example.com" && request.sql.read_only && request.sql.tables.all(t, t == "public.orders")`,
	}}})
	require.NoError(t, cfg.Validate())

	a := runApp(t, cfg, "all")
	host, port, err := net.SplitHostPort(a.ListenAddr("postgres"))
	require.NoError(t, err)
	g := &gateway{pgHost: host, pgPort: port, api: "http://" + a.HTTPAddr(), issuer: "http://" + a.HTTPAddr(), chAddr: ch.Addr(), chDB: cfg.ClickHouse.Database, pg: pg}

	tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer tcancel()
	// A person's token from Dex whose audience is the gateway (the CLI client asks for it).
	token := func(u dextest.User) string {
		tok, err := dex.PasswordGrant(tctx, dextest.CLI, dextest.CLISecret, u, "email", "profile", "audience:server:client_id:"+dextest.Gateway)
		require.NoError(t, err)
		return tok.AccessToken
	}
	alice, bob := token(dextest.Users[0]), token(dextest.Users[1])

	// Rules name people: alice reads orders; bob, to whom no rule applies, is refused.
	out, errOut, err := g.psql(t, alice, "alice", "select item from orders order by id limit 1")
	require.NoError(t, err, errOut)
	require.Contains(t, out, "analytical engine")
	_, errOut, err = g.psql(t, bob, "bob", "select item from orders order by id limit 1")
	require.Error(t, err)
	require.Contains(t, errOut, "42501")

	// The backend's application_name names her too.
	c, err := pgconn.Connect(tctx, fmt.Sprintf("host=%s port=%s dbname=demo user=alice password=%s sslmode=disable", host, port, alice))
	require.NoError(t, err)
	direct, err := pgconn.Connect(tctx, pg.SuperuserConnString("demo"))
	require.NoError(t, err)
	defer direct.Close(tctx)
	res, err := direct.Exec(tctx, "select count(*) from pg_stat_activity where application_name = 'gatehouse:alice@example.com'").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "1", string(res[0].Rows[0][0]))

	// Sessions are listed by name, with Dex's subject next to it; a name finds them.
	auditor := g.token(t, "auditor", "auditors")
	var list struct {
		Sessions []query.Session `json:"sessions"`
	}
	require.Eventually(t, func() bool {
		err := g.cliJSON(t, auditor, &list, "sessions", "list", "--identity", "alice@example.com")
		return err == nil && len(list.Sessions) >= 2
	}, 30*time.Second, 100*time.Millisecond, "alice's sessions never listed: %+v", list)
	for _, s := range list.Sessions {
		require.Equal(t, "alice@example.com", s.Name)
		require.True(t, strings.HasPrefix(s.Identity, "Ci"), "Dex's opaque subject, not %q", s.Identity)
	}
	sub := list.Sessions[0].Identity
	var bySub struct {
		Sessions []query.Session `json:"sessions"`
	}
	require.NoError(t, g.cliJSON(t, auditor, &bySub, "sessions", "list", "--identity", sub))
	require.Len(t, bySub.Sessions, len(list.Sessions), "the subject finds the same sessions")
	var table, stderr bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"sessions", "list", "--identity", "alice@example.com", "--url", g.api, "--token", auditor}, &table, &stderr), stderr.String())
	require.Regexp(t, `\salice@example\.com\s+demo\s.*\s`+sub+`\n`, table.String())

	// The audit store has both, in identity_name and identity_sub.
	chc, err := ingest.Open(config.ClickHouse{Address: g.chAddr, Username: "default"})
	require.NoError(t, err)
	defer chc.Close()
	var n uint64
	require.NoError(t, chc.QueryRow(tctx, "SELECT count() FROM "+g.chDB+".events WHERE identity_name = 'alice@example.com' AND identity_sub = ? AND type = 'session.start'", sub).Scan(&n))
	require.GreaterOrEqual(t, n, uint64(2))

	// An administrator revokes her by name: her open session ends, a new one is refused.
	admin := g.token(t, "admin", "gatehouse-admins")
	var revOut bytes.Buffer
	stderr.Reset()
	require.Equal(t, 0, cli.Main([]string{"revoke", "--identity", "alice@example.com", "--reason", "left the company", "--url", g.api, "--token", admin}, &revOut, &stderr), stderr.String())
	var ended error
	require.Eventually(t, func() bool {
		_, ended = c.Exec(tctx, "select 1").ReadAll()
		return ended != nil
	}, 10*time.Second, 20*time.Millisecond, "alice's session was not ended")
	var pe *pgconn.PgError
	require.True(t, errors.As(ended, &pe), "%v", ended)
	require.Equal(t, "57P01", pe.Code)
	require.Contains(t, pe.Message, "access revoked by admin: left the company")
	_, errOut, err = g.psql(t, alice, "alice", "select 1")
	require.Error(t, err)
	require.Contains(t, errOut, "access revoked for alice@example.com by admin")
	var revs struct {
		Revocations []revoke.Revocation `json:"revocations"`
	}
	require.NoError(t, g.cliJSON(t, admin, &revs, "revocations"))
	require.Len(t, revs.Revocations, 1)
	require.Equal(t, "alice@example.com", revs.Revocations[0].Value)

	// Every session's chain, names included, still verifies.
	var verifyOut bytes.Buffer
	stderr.Reset()
	require.Eventually(t, func() bool {
		verifyOut.Reset()
		stderr.Reset()
		return cli.Main([]string{"audit", "verify", "--url", g.api, "--token", auditor}, &verifyOut, &stderr) == 0
	}, 60*time.Second, 500*time.Millisecond, "audit verify: %s %s", verifyOut.String(), stderr.String())
}
