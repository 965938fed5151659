package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
)

// TestNoLoss publishes N events while ingest and ClickHouse are killed and restarted, and
// finds exactly N rows afterwards.
func TestNoLoss(t *testing.T) {
	const n = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := bustest.Connect(t)
	ch := chtest.Start(t)
	cfg, err := filepath.Abs("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	env := []string{"GATEHOUSE_NATS_URL=" + b.NC.ConnectedUrl(), "GATEHOUSE_CLICKHOUSE_ADDR=" + ch.Addr(),
		"GATEHOUSE_DEMO_PG_ADDR=127.0.0.1:1", "GATEHOUSE_DATA_DIR=" + t.TempDir()}
	runIngest := func() *process {
		return startProcess(t, append(env, "GATEHOUSE_HTTP_LISTEN=127.0.0.1:"+freePort(t)), "run", "--config", cfg, "--target=ingest")
	}
	conn, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: "default"})
	require.NoError(t, err)
	defer conn.Close()
	count := func(q string) uint64 {
		var c uint64
		if err := conn.QueryRow(ctx, q).Scan(&c); err != nil {
			return 0
		}
		return c
	}

	publish := func(from, to int) {
		for i := from; i < to; i++ {
			sess := fmt.Sprintf("session-%03d", i%100)
			p, _ := json.Marshal(schemas.DbQuery{QueryID: uint64(i), SQL: fmt.Sprintf("select %d", i), Protocol: "simple"})
			e := schemas.Event{ID: uuid.NewString(), Type: schemas.TypeDbQuery, Code: schemas.CodeDbQuery, Time: time.Now().UTC().Truncate(time.Microsecond),
				SessionID: sess, Seq: uint64(i/100 + 1), Resource: "demo", Payload: p}
			e.Identity.Subject = "svc-load"
			data, _ := json.Marshal(&e)
			m := nats.NewMsg(bus.AuditSubject("demo", sess, e.Type))
			m.Data = data
			m.Header.Set(jetstream.MsgIDHeader, e.ID)
			// On a loaded machine JetStream acknowledges slower than this loop publishes:
			// past the client's outstanding limit, wait for the acknowledgements and go on.
			for {
				_, err := b.JS.PublishMsgAsync(m)
				if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					select {
					case <-b.JS.PublishAsyncComplete():
					case <-ctx.Done():
						t.Fatal("publish did not complete")
					}
					continue
				}
				require.NoError(t, err)
				break
			}
		}
		select {
		case <-b.JS.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("publish did not complete")
		}
	}

	first := runIngest()
	publish(0, 8000)
	require.Eventually(t, func() bool { return count("SELECT count() FROM gatehouse.events"+ours) >= 1000 }, time.Minute, 50*time.Millisecond)

	// ClickHouse is down for over a minute (twice the ingest consumer's ack wait) under a
	// running ingest: it keeps its batch alive, backs off, and catches up.
	ch.Kill()
	publish(8000, 11000)
	time.Sleep(65 * time.Second)
	require.NoError(t, ch.Restart(ctx))
	waitAll(t, ctx, b, conn, count, 11000, 2*time.Minute) // after the outage, every event published so far

	// Crash both in the middle of the stream.
	first.kill()
	ch.Kill()
	publish(11000, 14000)

	// Ingest comes back while ClickHouse is still down: it waits and retries.
	second := runIngest()
	require.Eventually(t, func() bool { return strings.Contains(second.log.String(), "schema migrations not applied yet") }, time.Minute, 50*time.Millisecond)
	require.NoError(t, ch.Restart(ctx))
	publish(14000, n)

	waitAll(t, ctx, b, conn, count, n, 2*time.Minute)
	require.NoError(t, conn.Exec(ctx, "OPTIMIZE TABLE gatehouse.events FINAL"))
	require.Equal(t, uint64(n), count("SELECT count() FROM gatehouse.events"+ours), "exactly N rows after merging duplicates away")
	require.Equal(t, uint64(n), count("SELECT uniqExact(id) FROM gatehouse.events"+ours))
	t.Logf("events not published by the test (the ingest process's own, such as policy.changed from seeding its config): %d",
		count("SELECT count() FROM gatehouse.events WHERE NOT ("+oursCond+")"))
}

// ours selects the events the test publishes: the ingest process records events of its own
// too (policy.changed when it seeds its config into KV).
const (
	oursCond = "resource = 'demo' AND type = 'db.query' AND startsWith(session_id, 'session-')"
	ours     = " WHERE " + oursCond
)

// waitAll waits until ClickHouse holds want distinct events of the test's; when it does not in time, it
// fails with what ClickHouse holds and what the ingest consumer still has pending, so that
// a stall can be told from a loss.
func waitAll(t *testing.T, ctx context.Context, b *bus.Bus, conn driver.Conn, count func(string) uint64, want uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if count("SELECT count() FROM gatehouse.events FINAL"+ours) == want {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	state := "consumer: unknown"
	if c, err := b.JS.Consumer(ctx, bus.StreamAudit, ingest.ConsumerName); err == nil {
		if ci, err := c.Info(ctx); err == nil {
			state = fmt.Sprintf("consumer: %d pending, %d awaiting ack, %d redelivered, last delivered stream seq %d",
				ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered.Stream)
		}
	}
	// Events the test did not publish, if any.
	var others []string
	if rows, err := conn.Query(ctx, "SELECT type, resource, session_id, toString(time) FROM gatehouse.events WHERE NOT ("+oursCond+") LIMIT 10"); err == nil {
		for rows.Next() {
			var typ, res, sess, at string
			if rows.Scan(&typ, &res, &sess, &at) == nil {
				others = append(others, typ+" "+res+" "+sess+" "+at)
			}
		}
		rows.Close()
	}
	t.Fatalf("want %d of the test's events in ClickHouse within %s: FINAL %d, rows %d, distinct ids %d; not published by the test %v; %s", want, within,
		count("SELECT count() FROM gatehouse.events FINAL"+ours), count("SELECT count() FROM gatehouse.events"+ours),
		count("SELECT uniqExact(id) FROM gatehouse.events"+ours), others, state)
}
