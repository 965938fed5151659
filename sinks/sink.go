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
// after the destination took it; until then it is retried with backoff.
type Sink struct {
	Name      string
	BatchSize int
	Flush     time.Duration
	To        Deliverer
	Log       *slog.Logger

	cons jetstream.Consumer
}

// Start creates (or finds) the sink's durable consumer.
func (s *Sink) Start(ctx context.Context, js jetstream.JetStream) error {
	if s.BatchSize <= 0 {
		s.BatchSize = 500
	}
	if s.Flush <= 0 {
		s.Flush = time.Second
	}
	var err error
	s.cons, err = js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, jetstream.ConsumerConfig{
		Durable: "sink-" + s.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Minute, MaxAckPending: s.BatchSize * 2,
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
		for m := range fetched.Messages() {
			if len(b.Msgs) == 0 {
				if md, err := m.Metadata(); err == nil {
					b.First = md.Sequence.Stream
				}
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
	}
	return nil
}

// deliver hands b to the destination until it takes it or ctx ends, keeping the batch's
// messages from being redelivered meanwhile.
func (s *Sink) deliver(ctx context.Context, b *Batch) error {
	backoff := 250 * time.Millisecond
	for {
		err := s.To.Deliver(ctx, b)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.Log.Warn("sink delivery failed; retrying", "sink", s.Name, "to", s.To.Describe(), "backoff", backoff, "err", err)
		for _, m := range b.Msgs {
			_ = m.InProgress()
		}
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
