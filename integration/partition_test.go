package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/seal"
)

// TestPartitionLongerThanTheGatewayTimeout cuts a PostgreSQL proxy process from NATS for
// longer than audit.gateway_timeout (3 s here) while its clients go on. Its key lapses and
// ingest's sweeper, in another process, ends its open sessions as gateway_lost — but the
// proxy was only cut off. Its statements during the cut are answered (buffered, decided
// from the cache) and kept in its spool; once the link is back they overtake the
// sweeper's end. First the link returns to the live process, which ends its session
// itself; then the process is killed during a cut and started again, and its restart
// publishes what its journal held, after which the sweeper ends the session once more.
// Either way every answered statement is in the trail exactly once and verify reports no
// problem: the sweeper's ends are reported as superseded.
func TestPartitionLongerThanTheGatewayTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startRestartable(t)
	conn := p.ch
	hubPort := freePort(t)
	hub := "http://127.0.0.1:" + hubPort
	// policy, ingest (sweeping) and query reach NATS directly; the proxy through the link.
	startProcess(t, append(p.env[:len(p.env):len(p.env)], "GATEHOUSE_HTTP_LISTEN=127.0.0.1:"+hubPort, "GATEHOUSE_DATA_DIR="+t.TempDir()),
		"run", "--config", p.config(t, "buffered", "200ms"), "--target=policy,ingest,query")
	waitReady(t, hub)
	link := newLink(t, p.natsAddr)
	proxyEnv := append(p.env[:len(p.env):len(p.env)], "GATEHOUSE_NATS_URL=nats://"+link.Addr())
	proxyCfg := p.config(t, "buffered", "-1s")
	proxy := startProcess(t, proxyEnv, "run", "--config", proxyCfg, "--target=proxy-postgres")
	waitReady(t, p.base)

	connect := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo user=svc-orders password=%s sslmode=disable", p.pgPort, p.reader))
		require.NoError(t, err)
		return c
	}
	// Statements differ by a literal only: after the first, they are decided from the
	// proxy's cache, without the policy service it cannot reach during the cut.
	run := func(c *pgconn.PgConn, n int) {
		t.Helper()
		_, err := c.Exec(ctx, fmt.Sprintf("select %d as partition_n, * from orders limit 1", n)).ReadAll()
		require.NoError(t, err, "statement %d", n)
	}
	openSession := func(known ...string) string {
		t.Helper()
		var id string
		require.Eventually(t, func() bool {
			open, err := ingest.OpenSessions(ctx, conn, "gatehouse", time.Hour)
			require.NoError(t, err)
			for _, o := range open {
				if !contains(known, o.Session) && o.Last.Seq >= 4 {
					id = o.Session
				}
			}
			return id != ""
		}, time.Minute, 50*time.Millisecond)
		return id
	}
	ends := func(session string) []schemas.SessionEnd {
		rows, err := conn.Query(ctx, "SELECT payload FROM gatehouse.events FINAL WHERE session_id = ? AND type = ? ORDER BY seq", session, schemas.TypeSessionEnd)
		require.NoError(t, err)
		defer rows.Close()
		var out []schemas.SessionEnd
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			var e schemas.SessionEnd
			require.NoError(t, json.Unmarshal([]byte(s), &e))
			out = append(out, e)
		}
		return out
	}
	waitEnds := func(session string, reasons ...string) {
		t.Helper()
		require.Eventually(t, func() bool {
			var got []string
			for _, e := range ends(session) {
				got = append(got, e.Reason)
			}
			return strings.Join(got, ",") == strings.Join(reasons, ",")
		}, time.Minute, 50*time.Millisecond, "session %s ends %v", session, reasons)
	}
	verify := func() query.Verification {
		var v query.Verification
		var stdout, stderr strings.Builder
		code := cli.Main([]string{"audit", "verify", "--json", "--url", hub, "--token", p.auditor}, &stdout, &stderr)
		require.Contains(t, []int{0, 1}, code, stderr.String())
		require.NoError(t, json.Unmarshal([]byte(stdout.String()), &v), stdout.String())
		return v
	}

	// The link returns to the live process.
	c1 := connect()
	run(c1, 1)
	s1 := openSession()
	link.Cut()
	run(c1, 2)
	waitEnds(s1, seal.ReasonGatewayLost) // the proxy's key lapsed: the sweeper ended it
	run(c1, 3)                           // after that end, in the spool
	link.Restore()
	run(c1, 4)
	require.NoError(t, c1.Close(ctx))
	waitEnds(s1, seal.ReasonGatewayLost, "client_closed")

	// The process is killed during a cut; its restart publishes its journal.
	c2 := connect()
	run(c2, 5)
	s2 := openSession(s1)
	link.Cut()
	run(c2, 6)
	waitEnds(s2, seal.ReasonGatewayLost)
	run(c2, 7)
	proxy.kill()
	link.Restore()
	startProcess(t, proxyEnv, "run", "--config", proxyCfg, "--target=proxy-postgres")
	waitReady(t, p.base)
	waitEnds(s2, seal.ReasonGatewayLost, seal.ReasonGatewayLost) // ended again after what the journal held
	last := ends(s2)[1].LastSeq

	// Every answered statement is in the trail once, with its completion.
	for n := 1; n <= 7; n++ {
		var queries, done uint64
		require.NoError(t, conn.QueryRow(ctx, `SELECT countIf(type = 'db.query'), countIf(type = 'db.query.done') FROM gatehouse.events FINAL
			WHERE session_id IN (?, ?) AND (position(payload, ?) > 0 OR (type = 'db.query.done' AND (session_id, visitParamExtractUInt(payload, 'query_id')) IN
				(SELECT session_id, visitParamExtractUInt(payload, 'query_id') FROM gatehouse.events FINAL WHERE type = 'db.query' AND position(payload, ?) > 0)))`,
			s1, s2, fmt.Sprintf("select %d as partition_n", n), fmt.Sprintf("select %d as partition_n", n)).Scan(&queries, &done))
		require.Equal(t, []uint64{1, 1}, []uint64{queries, done}, "statement %d: its statement and completion once each", n)
	}
	var max2 uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT max(seq) FROM gatehouse.events WHERE session_id = ? AND type NOT IN ('session.end', 'session.sealed')", s2).Scan(&max2))
	require.Equal(t, max2, last, "the second end follows the last event the journal held")

	// Verify: no problem; both sweeper's first ends superseded.
	v := verify()
	require.Empty(t, v.Problems, "%+v", v.Problems)
	var superseded []string
	for _, s := range v.Superseded {
		superseded = append(superseded, s.Session)
	}
	require.ElementsMatch(t, []string{s1, s2}, superseded)
	var stdout, stderr strings.Builder
	require.Zero(t, cli.Main([]string{"audit", "verify", "--url", hub, "--token", p.auditor}, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "SUPERSEDED session "+s1)
	require.Contains(t, stdout.String(), "0 problem(s), 2 sweeper's end(s) superseded")
}
