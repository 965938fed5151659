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
)

// TestCrashedGatewaySessionsAreEnded kills a gateway (kill -9) with sessions open. Started
// again on its data directory, it drops the dead boot's key at once: `gatehouse audit
// verify` reports each cut session, while a live session of the running gateway is not
// reported; the sweeper then ends every cut session (session.end gateway_lost, the last
// sequence number, sealed), and verify reports none.
func TestCrashedGatewaySessionsAreEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startRestartable(t)
	env, base, pgPort, auditor, reader, conn := p.env, p.base, p.pgPort, p.auditor, p.reader, p.ch
	noSweep, sweep := p.config(t, "buffered", "-1s"), p.config(t, "buffered", "200ms")

	first := startProcess(t, env, "run", "--config", sweep, "--target=all")
	waitReady(t, base)
	for i := range 3 {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo user=svc-orders password=%s sslmode=disable", pgPort, reader))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, fmt.Sprintf("select %d, * from orders limit 1", i)).ReadAll()
		require.NoError(t, err)
	}
	// Every session's start and statement are in ClickHouse before the crash.
	var sessions []string
	require.Eventually(t, func() bool {
		open, err := ingest.OpenSessions(ctx, conn, "gatehouse", time.Hour)
		if err != nil {
			return false
		}
		sessions = nil
		for _, o := range open {
			if o.Last.Seq >= 4 { // start, query, decision, result, done
				sessions = append(sessions, o.Session)
			}
		}
		return len(sessions) == 3
	}, time.Minute, 100*time.Millisecond)
	first.kill()

	// Started again without sweeping: the dead boot is gone at once, its sessions are cut.
	second := startProcess(t, env, "run", "--config", noSweep, "--target=all")
	waitReady(t, base)
	live, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo user=svc-orders password=%s sslmode=disable", pgPort, reader))
	require.NoError(t, err)
	defer live.Close(ctx)
	_, err = live.Exec(ctx, "select 'live', * from orders limit 1").ReadAll()
	require.NoError(t, err)
	var liveSession string
	require.Eventually(t, func() bool {
		open, err := ingest.OpenSessions(ctx, conn, "gatehouse", time.Hour)
		require.NoError(t, err)
		for _, o := range open {
			if !contains(sessions, o.Session) && o.Last.Seq >= 2 {
				liveSession = o.Session
			}
		}
		return liveSession != ""
	}, time.Minute, 100*time.Millisecond)
	verify := func() query.Verification {
		var v query.Verification
		var stdout, stderr strings.Builder
		code := cli.Main([]string{"audit", "verify", "--json", "--url", base, "--token", auditor}, &stdout, &stderr)
		require.Contains(t, []int{0, 1}, code, stderr.String())
		require.NoError(t, json.Unmarshal([]byte(stdout.String()), &v), stdout.String())
		return v
	}
	v := verify()
	var reported []string
	for _, p := range v.Problems {
		require.Equal(t, "cut", p.Kind, "%+v", p)
		require.Contains(t, p.Detail, "is gone")
		reported = append(reported, p.Session)
	}
	require.ElementsMatch(t, sessions, reported, "each cut session is reported, the live one is not")
	second.stop()

	// With the sweeper: every cut session is ended and sealed; the live one is left alone
	// (its gateway stopped cleanly and ended it itself).
	startProcess(t, env, "run", "--config", sweep, "--target=all")
	waitReady(t, base)
	require.Eventually(t, func() bool { return len(verify().Problems) == 0 }, time.Minute, 200*time.Millisecond, "verify reports none once the sweeper ended them")
	for _, s := range sessions {
		var ends []schemas.SessionEnd
		rows, err := conn.Query(ctx, "SELECT payload FROM gatehouse.events FINAL WHERE session_id = ? AND type = ?", s, schemas.TypeSessionEnd)
		require.NoError(t, err)
		for rows.Next() {
			var p string
			require.NoError(t, rows.Scan(&p))
			var e schemas.SessionEnd
			require.NoError(t, json.Unmarshal([]byte(p), &e))
			ends = append(ends, e)
		}
		rows.Close()
		require.Len(t, ends, 1, s)
		require.Equal(t, "gateway_lost", ends[0].Reason)
		require.GreaterOrEqual(t, ends[0].LastSeq, uint64(5))
	}
	var liveEnd string
	require.NoError(t, conn.QueryRow(ctx, "SELECT payload FROM gatehouse.events WHERE session_id = ? AND type = ?", liveSession, schemas.TypeSessionEnd).Scan(&liveEnd))
	require.Contains(t, liveEnd, `"reason":"shutdown"`, "the session of the gateway that stopped cleanly was ended by it")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
