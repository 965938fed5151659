package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrSpoolFull is returned when the buffered-audit spool has no room: the proxy refuses new
// requests rather than forward them unrecorded.
var ErrSpoolFull = errors.New("audit spool is full: JetStream is not keeping up or is unreachable")

// ErrClosed is returned after the publisher has been closed.
var ErrClosed = errors.New("audit publisher is closed")

// Publisher sends events to JetStream in order, asynchronously, through a bounded spool. A
// publish that fails is retried with the same message ID (JetStream deduplicates), so an
// accepted event is not lost while the process lives; Close waits for the spool to drain.
type Publisher struct {
	js  jetstream.JetStream
	log *slog.Logger

	wait     time.Duration // how long a full spool may hold up a statement before refusing it
	mu       sync.RWMutex  // guards closed against sends on queue
	closed   bool
	queue    chan *pending
	inflight chan inflight
	done     chan struct{}

	published *prometheus.CounterVec
	retries   prometheus.Counter
	spool     prometheus.Gauge
}

type pending struct {
	subject string
	id      string     // the first event's id: the message's Nats-Msg-Id
	types   []string   // the events' types, for metrics
	data    []byte     // one event, or several separated by newlines
	ack     chan error // nil when nobody waits
}

type inflight struct {
	p   *pending
	fut jetstream.PubAckFuture
	err error
}

// NewPublisher starts a publisher with room for spool messages; a statement waits up to
// wait for room before it is refused.
func NewPublisher(js jetstream.JetStream, spool int, wait time.Duration, reg prometheus.Registerer, log *slog.Logger) *Publisher {
	p := &Publisher{js: js, log: log, wait: wait,
		queue:    make(chan *pending, spool),
		inflight: make(chan inflight, 4096),
		done:     make(chan struct{}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_events_published_total",
			Help: "Audit events acknowledged by JetStream, by type."}, []string{"type"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_events_publish_retries_total",
			Help: "Event publishes retried after a failure."}),
		spool: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_events_spooled",
			Help: "Events waiting to be sent to JetStream."}),
	}
	reg.MustRegister(p.published, p.retries, p.spool)
	go p.send()
	go p.confirm()
	return p
}

// enqueue adds a message to the spool. When the spool is full it waits up to the
// configured time for room (backpressure on the statement), then refuses.
func (p *Publisher) enqueue(pe *pending) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	select {
	case p.queue <- pe:
		p.spool.Inc()
		return nil
	default:
	}
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case p.queue <- pe:
		p.spool.Inc()
		return nil
	case <-t.C:
		return ErrSpoolFull
	}
}

func (p *Publisher) msg(pe *pending) *nats.Msg {
	m := nats.NewMsg(pe.subject)
	m.Data = pe.data
	m.Header.Set(jetstream.MsgIDHeader, pe.id)
	return m
}

func (p *Publisher) send() {
	defer close(p.inflight)
	for pe := range p.queue {
		fut, err := p.js.PublishMsgAsync(p.msg(pe))
		p.inflight <- inflight{p: pe, fut: fut, err: err}
	}
}

func (p *Publisher) confirm() {
	defer close(p.done)
	for in := range p.inflight {
		err := in.err
		if err == nil {
			select {
			case <-in.fut.Ok():
			case err = <-in.fut.Err():
			}
		}
		if err != nil {
			err = p.retry(in.p, err)
		}
		p.spool.Dec()
		if err == nil {
			for _, t := range in.p.types {
				p.published.WithLabelValues(t).Inc()
			}
		}
		if in.p.ack != nil {
			in.p.ack <- err
		}
	}
}

// retry republishes synchronously until JetStream acknowledges. The message ID makes a
// duplicate harmless. It gives up only after ten minutes, with a loud log line naming the
// event, since at that point the process cannot hold events forever.
func (p *Publisher) retry(pe *pending, err error) error {
	deadline := time.Now().Add(10 * time.Minute)
	backoff := 50 * time.Millisecond
	for time.Now().Before(deadline) {
		p.retries.Inc()
		p.log.Warn("event publish failed; retrying", "event", pe.id, "subject", pe.subject, "err", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = p.js.PublishMsg(ctx, p.msg(pe))
		cancel()
		if err == nil {
			return nil
		}
	}
	p.log.Error("events could not be published for 10 minutes; dropping them", "event", pe.id, "events", len(pe.types), "subject", pe.subject, "err", err)
	return fmt.Errorf("publish event %s: %w", pe.id, err)
}

// Close stops accepting events and waits until the spool is drained or ctx ends.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit spool not drained: %w", ctx.Err())
	}
}
