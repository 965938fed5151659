package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/embedded"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
)

// IngestOptions configure the ingest bench.
type IngestOptions struct {
	Events    int // events to ingest
	PerMsg    int // events per JetStream message (a session's lingering batch)
	BatchSize int // ingest batch size
	Log       *slog.Logger
	Out       io.Writer
}

// IngestResult is what the ingest bench measured.
type IngestResult struct {
	Events       int           `json:"events"`
	PublishTime  time.Duration `json:"publish_ns"`
	IngestTime   time.Duration `json:"ingest_ns"`
	EventsPerSec float64       `json:"events_per_sec"`
	MaxLag       uint64        `json:"max_lag_messages"`
	// CPU time per event while ingesting: this process (decode, encode, send) and the
	// ClickHouse server (parse the block, sort, compress, write the part).
	IngestCPUPerEvent     time.Duration `json:"ingest_cpu_per_event_ns"`
	ClickHouseCPUPerEvent time.Duration `json:"clickhouse_cpu_per_event_ns"`
}

// Ingest fills GH_AUDIT with realistic events (statements with their decisions, results
// and ends, chained per session), then starts ingest against a local ClickHouse and times
// how long it takes for every event to be inserted.
func Ingest(ctx context.Context, o IngestOptions) (*IngestResult, error) {
	work, err := os.MkdirTemp("", "gh-bench-ingest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Out, "starting ClickHouse and NATS ...")
	ch, err := localdb.StartClickHouse(ctx, filepath.Join(work, "clickhouse"), 0)
	if err != nil {
		return nil, err
	}
	defer ch.Stop()
	ns, err := embedded.Start("127.0.0.1:0", filepath.Join(work, "nats"))
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	b, err := bus.Connect(ctx, ns.URL(), "bench", bus.Options{}, o.Log, nats.InProcessServer(ns))
	if err != nil {
		return nil, err
	}
	defer b.Close()

	fmt.Fprintf(o.Out, "publishing %d events (%d per message) ...\n", o.Events, o.PerMsg)
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, 1024)
	id := &schemas.Identity{Subject: "svc-orders", Issuer: "http://127.0.0.1/dev/oidc", Groups: []string{"orders-readers"}, Kind: "service"}
	for sent := 0; sent < o.Events; {
		session := uuid.NewString()
		var data []byte
		prev := ""
		n := min(o.PerMsg, o.Events-sent)
		first := ""
		for i := 0; i < n; i++ {
			var p schemas.Payload
			switch i % 4 {
			case 0:
				p = &schemas.DbQuery{QueryID: uint64(i/4 + 1), SQL: "SELECT abalance FROM pgbench_accounts WHERE aid = 4821", Protocol: "simple"}
			case 1:
				p = &schemas.Decision{QueryID: uint64(i/4 + 1), Effect: "allow", Policy: "bench", Rule: "bench-reads", Revision: 42, Fingerprint: "a1b2c3d4e5f60718", Kinds: []string{"select"}, Tables: []string{"public.pgbench_accounts"}, Cached: true}
			case 2:
				v := "-4821"
				p = &schemas.DbResultChunk{QueryID: uint64(i/4 + 1), Columns: []schemas.Column{{Name: "abalance", TableOID: 16390, Attnum: 3, TypeOID: 23}}, Rows: [][]*string{{&v}}}
			default:
				p = &schemas.DbQueryDone{QueryID: uint64(i/4 + 1), Status: "ok", CommandTags: []string{"SELECT 1"}, Rows: 1, RowsRecorded: 1, DurationUS: 87}
			}
			e := schemas.Event{ID: uuid.NewString(), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: time.Now().UTC(),
				SessionID: session, Seq: uint64(i + 1), Identity: *id, Resource: "bench", PolicyRevision: 42, PrevHash: prev, Payload: p.AppendJSON(nil)}
			if e.Hash, err = e.ComputeHash(); err != nil {
				return nil, err
			}
			prev = e.Hash
			if i > 0 {
				data = append(data, '\n')
			} else {
				first = e.ID
			}
			data = e.AppendJSON(data)
		}
		// Compressed as proxies send their batches.
		m := nats.NewMsg(bus.AuditSubject("bench", session, "batch"))
		m.Header.Set(jetstream.MsgIDHeader, first)
		bus.CompressAudit(m, data, nil)
		f, err := b.JS.PublishMsgAsync(m)
		if err != nil {
			return nil, err
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) {
			if err := waitAll(ctx, futures); err != nil {
				return nil, err
			}
			futures = futures[:0]
		}
		sent += n
	}
	if err := waitAll(ctx, futures); err != nil {
		return nil, err
	}
	res := &IngestResult{Events: o.Events, PublishTime: time.Since(start)}

	fmt.Fprintln(o.Out, "ingesting ...")
	conn, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: "default", Database: "gatehouse"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	in := ingest.New(ingest.Config{Database: "gatehouse", BatchSize: o.BatchSize, FlushInterval: 200 * time.Millisecond}, b.JS, conn, prometheus.NewRegistry(), o.Log)
	if err := in.Start(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start = time.Now()
	chCPU0, _ := ch.CPUTime()
	ownCPU0 := selfCPUTime()
	go func() { _ = in.Run(rctx) }()
	for {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM gatehouse.events").Scan(&n); err == nil && n >= uint64(o.Events) {
			break
		}
		if c, err := b.JS.Consumer(ctx, bus.StreamAudit, ingest.ConsumerName); err == nil {
			if info, err := c.Info(ctx); err == nil {
				res.MaxLag = max(res.MaxLag, info.NumPending+uint64(info.NumAckPending))
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	res.IngestTime = time.Since(start)
	res.EventsPerSec = float64(o.Events) / res.IngestTime.Seconds()
	if chCPU1, err := ch.CPUTime(); err == nil {
		res.ClickHouseCPUPerEvent = (chCPU1 - chCPU0) / time.Duration(o.Events)
	}
	res.IngestCPUPerEvent = (selfCPUTime() - ownCPU0) / time.Duration(o.Events)
	fmt.Fprintf(o.Out, "%d events inserted into ClickHouse in %s: %.0f events/s (published in %s; most messages waiting: %d)\n",
		o.Events, res.IngestTime.Round(time.Millisecond), res.EventsPerSec, res.PublishTime.Round(time.Millisecond), res.MaxLag)
	fmt.Fprintf(o.Out, "CPU per event: ingest %s, ClickHouse %s\n", res.IngestCPUPerEvent, res.ClickHouseCPUPerEvent)
	return res, nil
}

func waitAll(ctx context.Context, fs []jetstream.PubAckFuture) error {
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// selfCPUTime is this process's user + system time so far.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
