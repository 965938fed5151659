package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

// TestKilledGatewayLosesNothingAnswered kills a gateway (kill -9) under four clients
// running statements as fast as they can, in each audit mode. Every statement a client got
// answered must have its whole trail in ClickHouse — statement, decision, result and
// completion — once the gateway has started again on its data directory (which publishes
// what its spool's journal kept) and the sweeper has ended the cut sessions; `audit verify`
// then reports only statements that were still running at the kill (no completion), none of
// which a client saw answered.
func TestKilledGatewayLosesNothingAnswered(t *testing.T) {
	for _, mode := range []string{"buffered", "strict"} {
		t.Run(mode, func(t *testing.T) { testKilledGatewayLosesNothingAnswered(t, mode) })
	}
}

func testKilledGatewayLosesNothingAnswered(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startRestartable(t)
	env, base, pgPort, auditor, reader, conn := p.env, p.base, p.pgPort, p.auditor, p.reader, p.ch
	cfg := p.config(t, mode, "200ms")

	first := startProcess(t, env, "run", "--config", cfg, "--target=all")
	waitReady(t, base)

	// Four clients, each numbering its statements; a statement counts as answered once the
	// client has its completion (ReadyForQuery).
	const clients = 4
	var answered [clients][]int
	var total atomic.Int64
	var wg sync.WaitGroup
	for k := range clients {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo user=svc-orders password=%s sslmode=disable", pgPort, reader))
		require.NoError(t, err)
		defer c.Close(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := c.Exec(ctx, fmt.Sprintf("select 'spool-%d-%d' as k, id from orders limit 1", k, i)).ReadAll(); err != nil {
					return
				}
				answered[k] = append(answered[k], i)
				total.Add(1)
			}
		}()
	}
	require.Eventually(t, func() bool { return total.Load() >= 400 }, 2*time.Minute, 10*time.Millisecond, "the clients run statements")
	first.kill()
	wg.Wait()
	t.Logf("%s: %d statements answered before the kill", mode, total.Load())

	second := startProcess(t, env, "run", "--config", cfg, "--target=all")
	waitReady(t, base)
	replayed := regexp.MustCompile(`journal was published.*messages=(\d+)`).FindStringSubmatch(second.log.String())
	t.Logf("%s: messages published from the spool's journal at restart: %v", mode, replayed)

	// Every answered statement's trail, in ClickHouse.
	type stmt struct {
		session string
		query   uint64
	}
	marker := regexp.MustCompile(`'spool-(\d+)-(\d+)'`)
	var missing []string
	var incomplete map[stmt]bool
	deadline := time.Now().Add(2 * time.Minute)
	for {
		found := map[string]stmt{} // marker → statement
		kinds := map[stmt]map[string]bool{}
		rows, err := conn.Query(ctx, `SELECT session_id, type, payload FROM gatehouse.events FINAL
			WHERE resource = 'demo' AND type IN ('db.query', 'decision', 'db.result.chunk', 'db.query.done')`)
		require.NoError(t, err)
		for rows.Next() {
			var sess, typ, payload string
			require.NoError(t, rows.Scan(&sess, &typ, &payload))
			var p struct {
				QueryID uint64 `json:"query_id"`
				SQL     string `json:"sql"`
			}
			require.NoError(t, json.Unmarshal([]byte(payload), &p))
			s := stmt{sess, p.QueryID}
			if kinds[s] == nil {
				kinds[s] = map[string]bool{}
			}
			kinds[s][typ] = true
			if m := marker.FindStringSubmatch(p.SQL); m != nil && typ == schemas.TypeDbQuery {
				found[m[1]+"-"+m[2]] = s
			}
		}
		require.NoError(t, rows.Err())
		rows.Close()
		missing = nil
		for k := range clients {
			for _, i := range answered[k] {
				s, ok := found[fmt.Sprintf("%d-%d", k, i)]
				switch {
				case !ok:
					missing = append(missing, fmt.Sprintf("client %d statement %d: no db.query", k, i))
				case !kinds[s][schemas.TypeDecision] || !kinds[s][schemas.TypeDbResultChunk] || !kinds[s][schemas.TypeDbQueryDone]:
					missing = append(missing, fmt.Sprintf("client %d statement %d: only %v", k, i, kinds[s]))
				}
			}
		}
		incomplete = map[stmt]bool{}
		for s, k := range kinds {
			if k[schemas.TypeDbQuery] && !k[schemas.TypeDbQueryDone] {
				incomplete[s] = true
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Empty(t, missing, "%s: every answered statement has its whole trail", mode)

	// verify: the cut sessions are ended by the sweeper; what it still reports are the
	// statements that were running at the kill, and no answered one is among them.
	var v query.Verification
	require.Eventually(t, func() bool {
		var stdout, stderr strings.Builder
		code := cli.Main([]string{"audit", "verify", "--json", "--url", base, "--token", auditor}, &stdout, &stderr)
		if code != 0 && code != 1 {
			return false
		}
		v = query.Verification{}
		if json.Unmarshal([]byte(stdout.String()), &v) != nil {
			return false
		}
		for _, p := range v.Problems {
			if p.Kind != query.ProblemIncomplete {
				return false
			}
		}
		return true
	}, time.Minute, 200*time.Millisecond, "verify reports nothing but incomplete statements once the sweeper ended the cut sessions")
	reported := map[stmt]bool{}
	for _, p := range v.Problems {
		reported[stmt{p.Session, p.Query}] = true
	}
	require.Equal(t, incomplete, reported, "verify reports exactly the statements without completion")
	t.Logf("%s: %d statements were running at the kill (reported by verify as incomplete)", mode, len(reported))
	second.stop()
}
