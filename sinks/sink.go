// Package sinks pushes the audit trail to SIEMs: each sink is a durable JetStream consumer
// of GH_AUDIT of its own, so its position survives restarts and a sink that is down only
// falls behind (the proxies never wait for it).
package sinks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/services/bus"
)

// Deliverer sends one batch of events to a destination; an error means "not taken, try the
// whole batch again".
type Deliverer interface {
	Deliver(ctx context.Context, b *Batch) error
	// Describe names the destination in logs (no secrets).
	Describe() string
}

// Batch is what one delivery carries: JetStream messages (each one event, or several of a
// session separated by newlines) and the stream position of the first.
type Batch struct {
	First uint64
	Msgs  []jetstream.Msg
	// Data is each message's events as bus.AuditData reads them (nil: read them from
	// Msgs; a nil entry: a message that could not be read, skipped).
	Data [][]byte
}

// Events calls fn with each event of the batch, in order.
func (b *Batch) Events(fn func(ev []byte)) {
	for i, m := range b.Msgs {
		var data []byte
		if b.Data != nil {
			data = b.Data[i]
		} else {
			data, _ = bus.AuditData(m.Headers(), m.Data())
		}
		for len(data) > 0 {
			line := data
			data = nil
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line, data = line[:i], line[i+1:]
			}
			if len(line) > 0 {
				fn(line)
			}
		}
	}
}

// Sink delivers GH_AUDIT to one destination: a batch is acknowledged in JetStream only
// after the destination took it; until then it is retried with backoff, and kept from
// being redelivered by progress acknowledgements. A sinks process that dies holds what it
// had fetched for AckWait only: then JetStream redelivers it (at least once: a batch the
// destination took just before the death arrives twice, with the same event ids).
type Sink struct {
	Name      string
	BatchSize int
	Flush     time.Duration
	To        Deliverer
	Log       *slog.Logger
	// AckWait is how long a fetched batch is held for this process without a sign of
	// progress (default 10s); while a batch is being delivered, progress is signalled
	// every third of it.
	AckWait time.Duration
	Metrics *Metrics // nil: none

	cons jetstream.Consumer
}

// Metrics are the sinks' Prometheus metrics, labelled by sink.
type Metrics struct {
	events   *prometheus.CounterVec
	batches  *prometheus.CounterVec
	failures *prometheus.CounterVec
	pending  *prometheus.GaugeVec
	last     *prometheus.GaugeVec
}

// NewMetrics registers the sinks' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_sink_events_total",
			Help: "Events the sink's destination took."}, []string{"sink"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_sink_batches_total",
			Help: "Batches the sink's destination took."}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_sink_failures_total",
			Help: "Deliveries the sink's destination refused or did not answer (each retried)."}, []string{"sink"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gatehouse_sink_pending_messages",
			Help: "GH_AUDIT messages after the last one delivered: how far the sink is behind."}, []string{"sink"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gatehouse_sink_last_delivered_timestamp_seconds",
			Help: "When the sink's destination last took a batch."}, []string{"sink"}),
	}
	reg.MustRegister(m.events, m.batches, m.failures, m.pending, m.last)
	return m
}

// Start creates (or finds) the sink's durable consumer.
func (s *Sink) Start(ctx context.Context, js jetstream.JetStream) error {
	if s.BatchSize <= 0 {
		s.BatchSize = 500
	}
	if s.Flush <= 0 {
		s.Flush = time.Second
	}
	if s.AckWait <= 0 {
		s.AckWait = 10 * time.Second
	}
	var err error
	s.cons, err = js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, jetstream.ConsumerConfig{
		Durable: "sink-" + s.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: s.AckWait, MaxAckPending: s.BatchSize * 2,
	})
	if err != nil {
		return fmt.Errorf("sink %s: consumer: %w", s.Name, err)
	}
	return nil
}

// Run delivers until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		fetched, err := s.cons.Fetch(s.BatchSize, jetstream.FetchMaxWait(s.Flush))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.Log.Warn("sink fetch failed", "sink", s.Name, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		b := &Batch{}
		var pending uint64
		for m := range fetched.Messages() {
			if md, err := m.Metadata(); err == nil {
				if len(b.Msgs) == 0 {
					b.First = md.Sequence.Stream
				}
				pending = md.NumPending
			}
			data, err := bus.AuditData(m.Headers(), m.Data())
			if err != nil {
				s.Log.Error("audit message cannot be read; not delivered", "sink", s.Name, "subject", m.Subject(), "err", err)
			}
			b.Msgs = append(b.Msgs, m)
			b.Data = append(b.Data, data)
		}
		if len(b.Msgs) == 0 {
			continue
		}
		if err := s.deliver(ctx, b); err != nil {
			return nil // shutting down; JetStream redelivers the batch
		}
		for _, m := range b.Msgs {
			_ = m.Ack()
		}
		if s.Metrics != nil {
			n := 0
			b.Events(func([]byte) { n++ })
			s.Metrics.events.WithLabelValues(s.Name).Add(float64(n))
			s.Metrics.batches.WithLabelValues(s.Name).Inc()
			s.Metrics.pending.WithLabelValues(s.Name).Set(float64(pending))
			s.Metrics.last.WithLabelValues(s.Name).SetToCurrentTime()
		}
	}
	return nil
}

// deliver hands b to the destination until it takes it or ctx ends, keeping the batch's
// messages from being redelivered meanwhile (a progress acknowledgement every third of
// AckWait, also while one slow delivery is under way).
func (s *Sink) deliver(ctx context.Context, b *Batch) error {
	busy, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(max(s.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-busy.Done():
				return
			case <-t.C:
				for _, m := range b.Msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	backoff := 250 * time.Millisecond
	for {
		err := s.To.Deliver(ctx, b)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.Metrics != nil {
			s.Metrics.failures.WithLabelValues(s.Name).Inc()
		}
		s.Log.Warn("sink delivery failed; retrying", "sink", s.Name, "to", s.To.Describe(), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
