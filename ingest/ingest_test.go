package ingest_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
)

// chain builds a session's events with their hash chain.
func chain(t *testing.T, session, resource string, id schemas.Identity, payloads ...schemas.Payload) []schemas.Event {
	var out []schemas.Event
	prev := ""
	for i, p := range payloads {
		e := schemas.Event{ID: session + "-" + string(rune('a'+i)), Type: p.EventType(), Code: schemas.Codes[p.EventType()],
			Time: time.Date(2026, 11, 22, 5, 0, i, 123456000, time.UTC), SessionID: session, Seq: uint64(i + 1), Identity: id,
			Resource: resource, PolicyRevision: 7, PrevHash: prev, Payload: p.AppendJSON(nil)}
		h, err := e.ComputeHash()
		require.NoError(t, err)
		e.Hash, prev = h, h
		out = append(out, e)
	}
	return out
}

type harness struct {
	js  jetstream.JetStream
	ch  driver.Conn
	in  *ingest.Ingester
	reg *prometheus.Registry
}

func start(t *testing.T) *harness {
	ctx := context.Background()
	b := bustest.Connect(t)
	chs := chtest.Start(t)
	conn, err := ingest.Open(config.ClickHouse{Address: chs.Addr(), Username: "default"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	reg := prometheus.NewRegistry()
	in := ingest.New(ingest.Config{Database: "gh", BatchSize: 3, FlushInterval: 50 * time.Millisecond}, b.JS, conn, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, in.Start(ctx))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = in.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{js: b.JS, ch: conn, in: in, reg: reg}
}

// queryStrings runs a query of one String column and returns its rows.
func queryStrings(t *testing.T, ch driver.Conn, q string, args ...any) []string {
	t.Helper()
	var out []string
	rows, err := ch.Query(context.Background(), q, args...)
	require.NoError(t, err)
	for rows.Next() {
		var v string
		require.NoError(t, rows.Scan(&v))
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}

func (h *harness) publish(t *testing.T, resource, session string, data []byte) {
	_, err := h.js.Publish(context.Background(), bus.AuditSubject(resource, session, "batch"), data)
	require.NoError(t, err)
}

func (h *harness) count(t *testing.T) uint64 {
	var n uint64
	require.NoError(t, h.ch.QueryRow(context.Background(), "SELECT count() FROM gh.events").Scan(&n))
	return n
}

// Every event of every message reaches ClickHouse exactly as it was written (its chain
// still verifies), in stream order, whatever form its JSON takes; lines that are not
// events are counted and left out.
func TestIngestStoresEveryEventExactly(t *testing.T) {
	h := start(t)
	svc := schemas.Identity{Subject: "CgpzdmMtb3JkZXJzEgVsb2NhbA", Name: "svc-orders@example.com", Issuer: "http://127.0.0.1/dev/oidc", Groups: []string{"orders-readers"}, Kind: "service", OnBehalfOf: "alice@example.com"}
	odd := schemas.Identity{Subject: "weird \"name\"\twith\\escapes é", Issuer: "https://idp.example/", Kind: "human"} // no groups; escapes take encoding/json's path
	v := "4111 1111 1111 1111"
	s1 := chain(t, "s1", "demo", svc,
		&schemas.DbQuery{QueryID: 1, SQL: "select \"card\" from t where x = 'a\\nb' -- é ✓", Protocol: "simple"},
		&schemas.DbResultChunk{QueryID: 1, Columns: []schemas.Column{{Name: "card", TableOID: 1, Attnum: 2, TypeOID: 25}}, Rows: [][]*string{{&v}, {nil}}},
		&schemas.DbQueryDone{QueryID: 1, Status: "ok", CommandTags: []string{"SELECT 2"}, Rows: 2, RowsRecorded: 2})
	s2 := chain(t, "s2", "other", odd, &schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "extended"}, &schemas.SessionEnd{Reason: "client"})

	var msg []byte
	for i := range s1 {
		if i > 0 {
			msg = append(msg, '\n')
		}
		msg = s1[i].AppendJSON(msg)
	}
	// s1 goes compressed, as proxies send their batches.
	m := nats.NewMsg(bus.AuditSubject("demo", "s1", "batch"))
	bus.CompressAudit(m, msg, nil)
	require.Equal(t, bus.EncodingS2, m.Header.Get(bus.HeaderEncoding))
	require.Less(t, len(m.Data), len(msg))
	_, err := h.js.PublishMsg(context.Background(), m)
	require.NoError(t, err)
	h.publish(t, "other", "s2", append(append([]byte("not json at all\n"), s2[0].AppendJSON(nil)...), '\n')) // a bad line, and a trailing newline
	h.publish(t, "other", "s2", s2[1].AppendJSON(nil))
	h.publish(t, "other", "s3", nil) // an empty message is not an event either
	// Messages that cannot be read: a corrupt compressed one, and an unknown encoding.
	for _, enc := range []string{bus.EncodingS2, "zstd"} {
		m := nats.NewMsg(bus.AuditSubject("other", "s3", "batch"))
		m.Data = []byte("\x05garbage")
		m.Header.Set(bus.HeaderEncoding, enc)
		_, err := h.js.PublishMsg(context.Background(), m)
		require.NoError(t, err)
	}

	// Unreadable messages are counted as they are decoded, before the batch is inserted.
	require.Eventually(t, func() bool { return counter(t, h.reg, "gatehouse_ingest_invalid_total") >= 4 && h.count(t) >= 5 }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, uint64(5), h.count(t))
	require.Equal(t, 4.0, counter(t, h.reg, "gatehouse_ingest_invalid_total"))

	for _, want := range [][]schemas.Event{s1, s2} {
		got, err := query.ReadSession(context.Background(), h.ch, "gh", want[0].SessionID)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.NoError(t, schemas.VerifyChain(got))
	}
	// Positions: stream sequence and the line within the message.
	rows, err := h.ch.Query(context.Background(), "SELECT id, stream_seq, stream_index FROM gh.events ORDER BY stream_seq, stream_index")
	require.NoError(t, err)
	var pos []string
	for rows.Next() {
		var id string
		var seq uint64
		var idx uint32
		require.NoError(t, rows.Scan(&id, &seq, &idx))
		pos = append(pos, id+"@"+itoa(seq)+"."+itoa(uint64(idx)))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"s1-a@1.0", "s1-b@1.1", "s1-c@1.2", "s2-a@2.1", "s2-b@3.0"}, pos)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
