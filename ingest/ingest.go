package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// ConsumerName is the durable consumer of GH_AUDIT. Every ingest copy shares it, so the
// work is split between them.
const ConsumerName = "ingest"

// Config configures batching.
type Config struct {
	Database      string
	BatchSize     int
	FlushInterval time.Duration
}

// Ingester consumes GH_AUDIT into ClickHouse.
type Ingester struct {
	cfg  Config
	js   jetstream.JetStream
	ch   driver.Conn
	log  *slog.Logger
	cons jetstream.Consumer

	rows    prometheus.Counter
	invalid prometheus.Counter
	batches prometheus.Histogram
	lag     prometheus.Gauge
	errors  prometheus.Counter
}

// New makes an ingester.
func New(cfg Config, js jetstream.JetStream, ch driver.Conn, reg prometheus.Registerer, log *slog.Logger) *Ingester {
	in := &Ingester{cfg: cfg, js: js, ch: ch, log: log,
		rows:    prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_ingest_rows_total", Help: "Events inserted into ClickHouse."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_ingest_invalid_total", Help: "Messages that are not events (left in the stream, not inserted)."}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_ingest_batch_size", Help: "Events per ClickHouse insert.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		lag:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_ingest_lag_events", Help: "Events in GH_AUDIT not yet inserted (consumer pending)."}),
		errors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_ingest_insert_errors_total", Help: "Failed ClickHouse inserts (retried)."}),
	}
	reg.MustRegister(in.rows, in.invalid, in.batches, in.lag, in.errors)
	return in
}

// Start migrates ClickHouse (retrying while it comes up) and creates the durable consumer.
func (in *Ingester) Start(ctx context.Context) error {
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err = Migrate(ctx, in.ch, in.cfg.Database); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("clickhouse migrations: %w", err)
		}
		in.log.Warn("clickhouse not ready; retrying migrations", "err", err)
		time.Sleep(time.Second)
	}
	in.cons, err = in.js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, jetstream.ConsumerConfig{
		Durable:   ConsumerName,
		AckPolicy: jetstream.AckExplicitPolicy,
		// A crashed ingest holds its unacked batch until AckWait passes; keep it short and
		// extend it with InProgress while an insert is being retried.
		AckWait:       30 * time.Second,
		MaxAckPending: max(4*in.cfg.BatchSize, 20000),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", ConsumerName, bus.StreamAudit, err)
	}
	return nil
}

// Run fetches and inserts batches until ctx ends.
func (in *Ingester) Run(ctx context.Context) error {
	go in.watchLag(ctx)
	// Fetching and decoding the next batch overlaps inserting this one: a batch is acked
	// only after its insert, in order, so nothing is acknowledged before it is stored.
	batches := make(chan parsed) // the next batch waits with its fetcher, which keeps it alive
	go func() {
		defer close(batches)
		for ctx.Err() == nil {
			batch, err := in.cons.Fetch(in.cfg.BatchSize, jetstream.FetchMaxWait(in.cfg.FlushInterval))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				in.log.Warn("fetch from GH_AUDIT failed", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			var msgs []jetstream.Msg
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && len(msgs) == 0 {
				in.log.Debug("fetch ended", "err", err)
			}
			if len(msgs) == 0 {
				continue
			}
			p := parsed{msgs: msgs, rows: in.decode(msgs)}
			// While the current batch's insert waits (ClickHouse down), this one must not
			// reach its ack deadline and be redelivered: it would be inserted twice.
			alive := time.NewTicker(10 * time.Second)
			for sent := false; !sent; {
				select {
				case batches <- p:
					sent = true
				case <-alive.C:
					for _, m := range msgs {
						_ = m.InProgress()
					}
				case <-ctx.Done():
					alive.Stop()
					return
				}
			}
			alive.Stop()
		}
	}()
	for b := range batches {
		if err := in.insert(ctx, b.msgs, b.rows); err != nil {
			// Only on shutdown: leave the batch unacked, JetStream redelivers it.
			return nil
		}
		for _, m := range b.msgs {
			_ = m.Ack()
		}
	}
	return nil
}

// parsed is a fetched batch with its events decoded.
type parsed struct {
	msgs []jetstream.Msg
	rows []row
}

type row struct {
	ev    schemas.Event
	seq   uint64
	index uint32
}

// decode reads the events of msgs. Lines that are not events are logged and counted, not
// inserted; they stay in the stream.
func (in *Ingester) decode(msgs []jetstream.Msg) []row {
	rows := make([]row, 0, len(msgs))
	for _, m := range msgs {
		var seq uint64
		if meta, err := m.Metadata(); err == nil {
			seq = meta.Sequence.Stream
		}
		// A message holds one event, or several of one session separated by newlines.
		for i, line := range bytes.Split(m.Data(), []byte{'\n'}) {
			r := row{seq: seq, index: uint32(i)}
			if err := json.Unmarshal(line, &r.ev); err != nil || r.ev.ID == "" || r.ev.Type == "" {
				in.log.Error("not an event; not inserted (it stays in GH_AUDIT)", "subject", m.Subject(), "stream_seq", seq, "index", i, "err", err)
				in.invalid.Inc()
				continue
			}
			rows = append(rows, r)
		}
	}
	return rows
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// insert writes rows to ClickHouse, retrying with backoff until it succeeds or ctx ends
// (keeping msgs from being redelivered meanwhile).
func (in *Ingester) insert(ctx context.Context, msgs []jetstream.Msg, rows []row) error {
	backoff := 200 * time.Millisecond
	for {
		err := func() error {
			b, err := in.ch.PrepareBatch(ctx, "INSERT INTO "+in.cfg.Database+".events ("+EventColumns+")")
			if err != nil {
				return err
			}
			for _, r := range rows {
				e := &r.ev
				if err := b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
					e.Identity.Subject, e.Identity.Issuer, nonNil(e.Identity.Groups), e.Identity.Kind, e.Identity.OnBehalfOf,
					e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), r.seq, r.index); err != nil {
					_ = b.Abort()
					return err
				}
			}
			return b.Send()
		}()
		if err == nil {
			in.rows.Add(float64(len(rows)))
			in.batches.Observe(float64(len(rows)))
			return nil
		}
		in.errors.Inc()
		in.log.Warn("clickhouse insert failed; retrying", "events", len(rows), "backoff", backoff, "err", err)
		for _, m := range msgs {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (in *Ingester) watchLag(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := in.cons.Info(ictx)
			cancel()
			if err == nil {
				in.lag.Set(float64(info.NumPending + uint64(info.NumAckPending)))
			}
		}
	}
}
