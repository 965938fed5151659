package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// ConsumerName is the durable consumer of GH_AUDIT. Every ingest copy shares it, so the
// work is split between them.
const ConsumerName = "ingest"

// Config configures batching.
type Config struct {
	Database string
	// Cluster, when enabled, selects the cluster schema (MigrateCluster).
	Cluster       config.ClickHouseCluster
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
	// migrated: the schema is in place (Run migrates first when Start could not).
	migrated bool
	lease    *bus.Lease

	rows    prometheus.Counter
	invalid prometheus.Counter
	batches prometheus.Histogram
	lag     prometheus.Gauge
	errors  prometheus.Counter
}

// decodeBufs hold decompressed messages while a batch is decoded.
var decodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128<<10); return &b }}

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

// Start migrates ClickHouse when it is up and creates the durable consumer. When ClickHouse
// is down, Start does not wait for it (the rest of the process comes up): Run retries the
// migrations with backoff for as long as it takes, and events wait in JetStream meanwhile.
func (in *Ingester) Start(ctx context.Context) error {
	var err error
	if err := in.migrate(ctx); err != nil {
		in.log.Warn("schema migrations not applied yet (ClickHouse down, or another ingest copy migrating); retrying", "err", err)
	} else {
		in.migrated = true
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

// migrate applies the schema's migrations holding the migration lease of this database, so
// that of several ingest copies one migrates at a time (a rebuild copies the events table;
// two at once would each take the other's table away). The lease is renewed while a long
// copy runs and taken over from a copy that died holding it.
func (in *Ingester) migrate(ctx context.Context) error {
	if in.lease == nil {
		kv, err := bus.OpenLocks(ctx, in.js)
		if err != nil {
			return err
		}
		host, _ := os.Hostname()
		in.lease = &bus.Lease{KV: kv, Key: "migrations." + in.cfg.Database, Owner: fmt.Sprintf("ingest %s pid %d", host, os.Getpid()), TTL: 30 * time.Second}
	}
	return in.lease.Do(ctx, func(ctx context.Context) error {
		return MigrateStore(ctx, in.ch, config.ClickHouse{Database: in.cfg.Database, Cluster: in.cfg.Cluster})
	})
}

// Run fetches and inserts batches until ctx ends.
func (in *Ingester) Run(ctx context.Context) error {
	for backoff := 500 * time.Millisecond; !in.migrated; backoff = min(backoff*2, 10*time.Second) {
		sleep(ctx, backoff)
		if ctx.Err() != nil {
			return nil
		}
		if err := in.migrate(ctx); err != nil {
			in.log.Warn("schema migrations not applied yet; retrying", "backoff", backoff, "err", err)
			continue
		}
		in.migrated = true
	}
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
			p := parsed{msgs: msgs, cols: in.decode(msgs)}
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
		if err := in.insert(ctx, b.msgs, b.cols); err != nil {
			// Only on shutdown: leave the batch unacked, JetStream redelivers it.
			return nil
		}
		for _, m := range b.msgs {
			_ = m.Ack()
		}
	}
	return nil
}

// parsed is a fetched batch with its events decoded into columns.
type parsed struct {
	msgs []jetstream.Msg
	cols *columns
}

// columns holds a batch column by column, in EventColumns' order: the insert hands each
// column to the driver as one slice (no per-value reflection), and building them happens
// in the fetcher, while the previous batch is being inserted.
type columns struct {
	time                                []time.Time // date and time
	timeUS, seq, revision, streamSeq    []uint64
	id, typ, code, session, resource    []string
	sub, name, issuer, kind, onBehalfOf []string
	prev, hash, payl                    []string
	groups                              [][]string
	index                               []uint32
}

func (c *columns) len() int { return len(c.id) }

func (c *columns) add(e *schemas.Event, seq uint64, index uint32) {
	c.time = append(c.time, e.Time)
	c.timeUS = append(c.timeUS, uint64(e.Time.UnixMicro()))
	c.id = append(c.id, e.ID)
	c.typ = append(c.typ, e.Type)
	c.code = append(c.code, e.Code)
	c.session = append(c.session, e.SessionID)
	c.seq = append(c.seq, e.Seq)
	c.resource = append(c.resource, e.Resource)
	c.sub = append(c.sub, e.Identity.Subject)
	c.name = append(c.name, e.Identity.Name)
	c.issuer = append(c.issuer, e.Identity.Issuer)
	c.groups = append(c.groups, nonNil(e.Identity.Groups))
	c.kind = append(c.kind, e.Identity.Kind)
	c.onBehalfOf = append(c.onBehalfOf, e.Identity.OnBehalfOf)
	c.revision = append(c.revision, e.PolicyRevision)
	c.prev = append(c.prev, e.PrevHash)
	c.hash = append(c.hash, e.Hash)
	c.payl = append(c.payl, string(e.Payload))
	c.streamSeq = append(c.streamSeq, seq)
	c.index = append(c.index, index)
}

// slices is the batch in EventColumns' order.
func (c *columns) slices() []any {
	return []any{c.time, c.time, c.timeUS, c.id, c.typ, c.code, c.session, c.seq, c.resource, c.sub, c.name, c.issuer, c.groups,
		c.kind, c.onBehalfOf, c.revision, c.prev, c.hash, c.payl, c.streamSeq, c.index}
}

// decode reads the events of msgs. Lines that are not events are logged and counted, not
// inserted; they stay in the stream.
func (in *Ingester) decode(msgs []jetstream.Msg) *columns {
	// A message holds one event, or several of one session separated by newlines,
	// possibly compressed (bus.AuditData).
	datas := make([][]byte, len(msgs))
	readable := make([]bool, len(msgs))
	n := 0
	// Decoded messages go into pooled buffers, back in the pool once the batch is in
	// columns (which copy what they keep).
	var used []*[]byte
	defer func() {
		for _, b := range used {
			decodeBufs.Put(b)
		}
	}()
	for i, m := range msgs {
		var dst []byte
		if m.Headers().Get(bus.HeaderEncoding) != "" {
			b := decodeBufs.Get().(*[]byte)
			used = append(used, b)
			dst = *b
		}
		data, err := bus.AuditDataInto(m.Headers(), m.Data(), dst)
		if dst != nil && cap(data) > cap(dst) && cap(data) <= 1<<20 {
			*used[len(used)-1] = data[:0]
		}
		if err != nil {
			in.log.Error("audit message cannot be read; not inserted (it stays in GH_AUDIT)", "subject", m.Subject(), "err", err)
			in.invalid.Inc()
			continue
		}
		datas[i], readable[i] = data, true
		n += bytes.Count(data, []byte{'\n'}) + 1
	}
	c := &columns{}
	for _, p := range []*[]string{&c.id, &c.typ, &c.code, &c.session, &c.resource, &c.sub, &c.name, &c.issuer, &c.kind, &c.onBehalfOf, &c.prev, &c.hash, &c.payl} {
		*p = make([]string, 0, n)
	}
	c.time = make([]time.Time, 0, n)
	c.timeUS, c.seq, c.revision, c.streamSeq = make([]uint64, 0, n), make([]uint64, 0, n), make([]uint64, 0, n), make([]uint64, 0, n)
	c.groups = make([][]string, 0, n)
	c.index = make([]uint32, 0, n)
	var ev schemas.Event
	var dec schemas.EventDecoder
	for k, m := range msgs {
		if !readable[k] {
			continue
		}
		data := datas[k]
		var seq uint64
		if meta, err := m.Metadata(); err == nil {
			seq = meta.Sequence.Stream
		}
		resource, session, ok := AuditSubjectParts(m.Subject())
		if !ok {
			in.log.Error("not an audit subject; not inserted (it stays in GH_AUDIT)", "subject", m.Subject(), "stream_seq", seq)
			in.invalid.Inc()
			continue
		}
		for i := 0; len(data) > 0 || i == 0; i++ {
			line := data
			if j := bytes.IndexByte(data, '\n'); j >= 0 {
				line, data = data[:j], data[j+1:]
			} else {
				data = nil
			}
			ev = schemas.Event{}
			if err := dec.Unmarshal(line, &ev); err != nil || ev.ID == "" || ev.Type == "" {
				in.log.Error("not an event; not inserted (it stays in GH_AUDIT)", "subject", m.Subject(), "stream_seq", seq, "index", i, "err", err)
				in.invalid.Inc()
				continue
			}
			// An event is stored under the resource and session its subject names: the NATS
			// permissions that keep a proxy from publishing to _config (control records:
			// policy changes, grants, revocations, retention runs) hold only if the body
			// cannot claim another resource than the subject.
			if ev.Resource != resource || ev.SessionID != session {
				in.log.Error("event's resource or session is not its subject's; not inserted (it stays in GH_AUDIT)", "subject", m.Subject(),
					"stream_seq", seq, "index", i, "event", ev.ID, "resource", ev.Resource, "session", ev.SessionID)
				in.invalid.Inc()
				continue
			}
			c.add(&ev, seq, uint32(i))
		}
	}
	return c
}

// AuditSubjectParts splits an audit subject (bus.AuditSubject: gh.audit.<resource>.
// <session>.<type>) into its resource and session.
func AuditSubjectParts(subject string) (resource, session string, ok bool) {
	rest, ok := strings.CutPrefix(subject, bus.SubjectAudit+".")
	if !ok {
		return "", "", false
	}
	resource, rest, ok = strings.Cut(rest, ".")
	if !ok || resource == "" {
		return "", "", false
	}
	session, _, ok = strings.Cut(rest, ".")
	if !ok || session == "" {
		return "", "", false
	}
	return resource, session, true
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// insert writes a batch to ClickHouse, retrying with backoff until it succeeds or ctx ends
// (keeping msgs from being redelivered meanwhile).
func (in *Ingester) insert(ctx context.Context, msgs []jetstream.Msg, cols *columns) error {
	if cols.len() == 0 {
		return nil
	}
	backoff := 200 * time.Millisecond
	for {
		err := func() error {
			b, err := in.ch.PrepareBatch(ctx, "INSERT INTO "+in.cfg.Database+".events ("+EventColumns+")")
			if err != nil {
				return err
			}
			for i, col := range cols.slices() {
				if err := b.Column(i).Append(col); err != nil {
					_ = b.Abort()
					return err
				}
			}
			return b.Send()
		}()
		if err == nil {
			in.rows.Add(float64(cols.len()))
			in.batches.Observe(float64(cols.len()))
			return nil
		}
		in.errors.Inc()
		in.log.Warn("clickhouse insert failed; retrying", "events", cols.len(), "backoff", backoff, "err", err)
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
