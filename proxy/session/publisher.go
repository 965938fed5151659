package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/seal"
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
	linger   time.Duration // how long a buffered session's events may wait for company
	gateway  string        // the boot id of this gateway process, named in every session.start
	maxBytes int64         // bound on the bytes spooled
	sealKey  *seal.Key
	journal  *journal // the crash-safe copy of the spool (nil: memory only)
	offline  time.Duration
	waiting  atomic.Int64 // since when (unix ns) the oldest message has waited for its ack; 0: none
	retried  atomic.Int64 // when (unix ns) a retried publish last went through
	bytes    atomic.Int64 // bytes spooled: enqueued and not yet acknowledged
	mu       sync.RWMutex // guards closed against sends on queue
	closed   bool
	queue    chan *pending
	inflight chan inflight
	done     chan struct{}

	lmu     sync.Mutex // guards dirty and swept
	dirty   []*Session // sessions holding lingering events
	pending bool       // a sweep is scheduled

	smu      sync.Mutex            // guards stranded
	stranded map[*Session]struct{} // sessions whose batch the spool refused: offered again until taken

	published *prometheus.CounterVec
	retries   prometheus.Counter
	spool     prometheus.Gauge
}

type pending struct {
	subject string
	id      string     // the first event's id: the message's Nats-Msg-Id
	types   []string   // the events' types, for metrics
	data    []byte     // one event, or several separated by newlines; back to the pool once acknowledged
	size    int64      // len(data), for the spool's accounting (data is gone after the ack)
	ack     chan error // nil when nobody waits
	msg     *nats.Msg  // as sent (compressed), for retries
	wire    []byte     // the compressed data's buffer; back to its pool once acknowledged
	segs    []segRef   // the journal records that hold its events, acknowledged with it
	at      int64      // when it was spooled (unix ns)
}

type inflight struct {
	p   *pending
	fut jetstream.PubAckFuture
	err error
}

// PublisherOptions bound the spool and set the batching.
type PublisherOptions struct {
	Spool      int           // messages waiting for JetStream
	SpoolBytes int           // their bytes (0: 256 MiB)
	Wait       time.Duration // how long a statement waits for room before it is refused
	Linger     time.Duration // how long a buffered session's events may wait to share a message (0: not at all)
	SealKey    *seal.Key     // signs every session's chain at its end (nil: sessions are not sealed)
	// OfflineLimit refuses new sessions once a message has waited this long for JetStream
	// (a proxy cut off from NATS; 0: no limit but the spool's size).
	OfflineLimit time.Duration
}

// SetGateway names the gateway process (its boot id) in every session.start (before any).
func (p *Publisher) SetGateway(id string) { p.gateway = id }

// NewPublisher starts a publisher.
func NewPublisher(js jetstream.JetStream, o PublisherOptions, reg prometheus.Registerer, log *slog.Logger) *Publisher {
	if o.SpoolBytes <= 0 {
		o.SpoolBytes = 256 << 20
	}
	p := &Publisher{js: js, log: log, wait: o.Wait, linger: o.Linger, maxBytes: int64(o.SpoolBytes), sealKey: o.SealKey, offline: o.OfflineLimit,
		queue:    make(chan *pending, o.Spool),
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
	pe.at = time.Now().UnixNano()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if p.bytes.Load() < p.maxBytes {
		select {
		case p.queue <- pe:
			p.accept(pe)
			return nil
		default:
		}
	}
	deadline := time.Now().Add(p.wait)
	for p.bytes.Load() >= p.maxBytes {
		if time.Now().After(deadline) {
			return ErrSpoolFull
		}
		time.Sleep(time.Millisecond)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case p.queue <- pe:
		p.accept(pe)
		return nil
	case <-t.C:
		return ErrSpoolFull
	}
}

// accept accounts for pe once it is in the queue (by then the publisher may have sent it,
// and even had it acknowledged: only pe.size is read).
func (p *Publisher) accept(pe *pending) {
	p.spool.Inc()
	p.bytes.Add(pe.size)
}

// ErrOffline refuses new sessions while JetStream has not acknowledged anything for longer
// than the offline limit.
var ErrOffline = errors.New("audit trail unreachable")

// admit says whether a new session may start: not while the spool's oldest message has
// waited for JetStream longer than the offline limit (fail closed; the sessions already
// open go on until the spool is full).
func (p *Publisher) admit() error {
	since := p.waiting.Load()
	if p.offline <= 0 || since == 0 {
		return nil
	}
	if waited := time.Since(time.Unix(0, since)); waited > p.offline {
		return fmt.Errorf("%w: JetStream has acknowledged nothing for %s (audit.offline_limit %s); new sessions are refused until it does",
			ErrOffline, waited.Round(time.Second), p.offline)
	}
	return nil
}

// tryEnqueue adds a message to the spool if there is room now.
func (p *Publisher) tryEnqueue(pe *pending) error {
	pe.at = time.Now().UnixNano()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if p.bytes.Load() >= p.maxBytes {
		return ErrSpoolFull
	}
	select {
	case p.queue <- pe:
		p.accept(pe)
		return nil
	default:
		return ErrSpoolFull
	}
}

// later schedules s's lingering events to be flushed within the linger time.
func (p *Publisher) later(s *Session) {
	p.lmu.Lock()
	p.dirty = append(p.dirty, s)
	if !p.pending {
		p.pending = true
		time.AfterFunc(p.linger, p.sweep)
	}
	p.lmu.Unlock()
}

// strand keeps offering s's batch to the spool (every 100ms) until it is taken: a session
// that stalled on a full spool or disk, or one whose end could not be handed over.
func (p *Publisher) strand(s *Session) {
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.stranded == nil {
		p.stranded = map[*Session]struct{}{}
	}
	if len(p.stranded) == 0 {
		time.AfterFunc(100*time.Millisecond, p.retryStranded)
	}
	p.stranded[s] = struct{}{}
}

func (p *Publisher) retryStranded() {
	p.mu.RLock()
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		return // what was journaled is published by the next start
	}
	p.smu.Lock()
	ss := make([]*Session, 0, len(p.stranded))
	for s := range p.stranded {
		ss = append(ss, s)
	}
	p.smu.Unlock()
	var taken []*Session
	for _, s := range ss {
		if s.retryStranded() {
			taken = append(taken, s)
		}
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	for _, s := range taken {
		delete(p.stranded, s)
	}
	if len(p.stranded) > 0 {
		time.AfterFunc(100*time.Millisecond, p.retryStranded)
	}
}

// sweep flushes the sessions whose events have lingered.
func (p *Publisher) sweep() {
	p.lmu.Lock()
	dirty := p.dirty
	p.dirty, p.pending = nil, false
	p.lmu.Unlock()
	for i, s := range dirty {
		if i > 0 {
			runtime.Gosched()
		}
		s.flushLingering()
	}
}

// msg builds pe's message once: its data compressed (bus.CompressAudit), the batch
// buffer back to its pool at once when the compressed copy is what goes out.
func (p *Publisher) msg(pe *pending) *nats.Msg {
	if pe.msg != nil {
		return pe.msg
	}
	m := nats.NewMsg(pe.subject)
	m.Header.Set(jetstream.MsgIDHeader, pe.id)
	wire := getWireBuf()
	if pe.wire = bus.CompressAudit(m, pe.data, wire); pe.wire == nil {
		putWireBuf(wire) // sent as it is
	} else {
		putBatchBuf(pe.data) // the compressed copy is what goes out
		pe.data = nil
	}
	pe.msg = m
	return m
}

func (p *Publisher) send() {
	defer close(p.inflight)
	for pe := range p.queue {
		fut, err := p.js.PublishMsgAsync(p.msg(pe))
		p.inflight <- inflight{p: pe, fut: fut, err: err}
	}
}

// confirm waits for JetStream's acknowledgements in the order the messages went out, and
// retries what failed.
func (p *Publisher) confirm() {
	defer close(p.done)
	var next *inflight // taken off p.inflight by a retry, its turn not come yet
	for {
		var in inflight
		if next != nil {
			in, next = *next, nil
		} else {
			var ok bool
			if in, ok = <-p.inflight; !ok {
				return
			}
		}
		p.waiting.Store(in.p.at)
		err := in.err
		if err == nil {
			select {
			case <-in.fut.Ok():
			case err = <-in.fut.Err():
			}
		}
		if err == nil {
			p.finish(in.p, nil)
			continue
		}
		// The messages behind a failed one have usually failed too (an acknowledgement
		// stall at a leader change fails every message in flight, thousands): those whose
		// outcome is in are retried with it, together, not one round trip each.
		window := []*pending{in.p}
		errs := []error{err}
	gather:
		for len(window) < retryWindow {
			select {
			case more, ok := <-p.inflight:
				if !ok {
					break gather
				}
				err, done := outcome(more)
				if !done {
					next = &more
					break gather
				}
				window, errs = append(window, more.p), append(errs, err)
			default:
				break gather
			}
		}
		p.retry(window, errs)
		for i, pe := range window {
			p.finish(pe, errs[i])
		}
	}
}

// retryWindow bounds the messages retried together.
const retryWindow = 1024

// outcome is in's acknowledgement or error if it has come (done).
func outcome(in inflight) (err error, done bool) {
	if in.err != nil {
		return in.err, true
	}
	select {
	case <-in.fut.Ok():
		return nil, true
	case err := <-in.fut.Err():
		return err, true
	default:
		return nil, false
	}
}

// finish accounts for an acknowledged message (err nil), or for one given up on, and tells
// whoever waits for it.
func (p *Publisher) finish(pe *pending, err error) {
	p.spool.Dec()
	p.bytes.Add(-pe.size)
	if err == nil {
		for _, r := range pe.segs {
			r.seg.ack(r.n)
		}
		// Counted per type, not per event: a batch holds a few types many times.
		var counts [16]struct {
			t string
			n int
		}
		k := 0
	types:
		for _, t := range pe.types {
			for i := range k {
				if counts[i].t == t {
					counts[i].n++
					continue types
				}
			}
			if k == len(counts) {
				p.published.WithLabelValues(t).Inc()
				continue
			}
			counts[k].t, counts[k].n = t, 1
			k++
		}
		for _, c := range counts[:k] {
			p.published.WithLabelValues(c.t).Add(float64(c.n))
		}
	}
	p.waiting.Store(0)
	if pe.ack != nil {
		pe.ack <- err
	}
	putBatchBuf(pe.data)
	putWireBuf(pe.wire)
	putTypes(pe.types)
	pe.data, pe.wire, pe.msg, pe.types, pe.segs = nil, nil, nil, nil, nil
}

// Batches are encoded into buffers reused once JetStream has acknowledged them: a
// session's batch grows to tens of KiB, and growing a new one for every message was most
// of the proxy's allocation.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

const batchBufSize = lingerBytes + 16<<10

// A batch's event types (for the published-events metric) are reused the same way.
var typeSlices = sync.Pool{New: func() any { t := make([]string, 0, 64); return &t }}

func getTypes() []string { return (*(typeSlices.Get().(*[]string)))[:0] }

func putTypes(t []string) {
	if t == nil || cap(t) > 4096 {
		return
	}
	clear(t[:cap(t)])
	typeSlices.Put(&t)
}

func getBatchBuf() []byte { return (*(batchBufs.Get().(*[]byte)))[:0] }

func putBatchBuf(b []byte) {
	if cap(b) < batchBufSize || cap(b) > 4*batchBufSize {
		return // an unusual size is left to the collector
	}
	b = b[:0]
	batchBufs.Put(&b)
}

// Compressed messages go out of buffers reused the same way.
var wireBufs = sync.Pool{New: func() any { b := make([]byte, 0, wireBufSize); return &b }}

var wireBufSize = s2.MaxEncodedLen(batchBufSize)

func getWireBuf() []byte { return (*(wireBufs.Get().(*[]byte)))[:0] }

func putWireBuf(b []byte) {
	if cap(b) < wireBufSize || cap(b) > 4*wireBufSize {
		return
	}
	b = b[:0]
	wireBufs.Put(&b)
}

// retry republishes the messages whose errs are set until JetStream acknowledges them,
// round after round, errs ending with what is left of each (nil: acknowledged). While
// JetStream answers, a round sends every message left at once and then awaits them all
// (after an acknowledgement stall thousands failed together; one round trip each held the
// recovery for half a minute). After a round in which nothing went through, the next
// sends only the first, as a probe, after a pause that grows: a server that is down, or a
// leader without its quorum, is not sent the whole window again and again (each send to a
// leader without quorum is one more proposal that may leave its id "in process"). The
// message ID makes a duplicate harmless: JetStream drops it within its duplicate window,
// and the audit store keeps one event per ID after it. It gives up only after ten minutes,
// with a loud log line naming each event, since at that point the process cannot hold
// events forever.
func (p *Publisher) retry(pes []*pending, errs []error) {
	var todo []int
	for i, err := range errs {
		if err != nil {
			todo = append(todo, i)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	backoff := 50 * time.Millisecond
	// Once a retry has gone through, JetStream is back: the messages that failed behind
	// it are retried at once, not after a pause (after a long outage thousands of them
	// are in flight).
	wait := time.Since(time.Unix(0, p.retried.Load())) > time.Second
	probe := false
	conflicts := make([]int, len(pes))
	futs := make([]jetstream.PubAckFuture, len(pes))
	for len(todo) > 0 && time.Now().Before(deadline) {
		first := pes[todo[0]]
		if wait {
			time.Sleep(backoff)
			// At most a second: a probe is one message, and the spool waits on it.
			backoff = min(backoff*2, time.Second)
		}
		round := todo
		if probe {
			round = todo[:1]
		}
		p.retries.Add(float64(len(round)))
		p.log.Warn("event publish failed; retrying", "event", first.id, "subject", first.subject, "messages", len(todo), "sending", len(round), "err", errs[todo[0]])
		stalled := false
		for _, i := range round {
			if stalled {
				futs[i] = nil // not sent this round; errs[i] stays as it was
				continue
			}
			pe, m := pes[i], p.msg(pes[i])
			if bus.IsMsgIDInProcess(errs[i]) {
				// The stream holds this message id as "in process": an earlier send of it
				// was proposed and never applied (its leader lost its quorum to a
				// partition), and JetStream refuses the id until its duplicate window passes
				// (2 minutes) — while every message behind this one waits. After a few tries
				// the message goes out under an id of its own: its events keep their ids, and
				// the store keeps one row of each (a copy the stale proposal may still add is
				// the same event).
				if conflicts[i]++; conflicts[i] >= 3 {
					m = copyMsg(m)
					m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s~%d", pe.id, conflicts[i]))
				}
			}
			futs[i], errs[i] = p.js.PublishMsgAsync(m)
			// nats.go holds at most so many publishes awaiting their acknowledgement (the
			// sender's count too): past that each call waits, then fails. The rest of the
			// round waits for the next.
			stalled = errors.Is(errs[i], jetstream.ErrTooManyStalledMsgs)
		}
		left, acked := todo[:0], 0
		for _, i := range todo {
			if futs[i] != nil && errs[i] == nil {
				select {
				case <-futs[i].Ok():
				case errs[i] = <-futs[i].Err():
				}
			}
			futs[i] = nil
			if errs[i] != nil {
				left = append(left, i)
			} else {
				acked++
			}
		}
		todo = left
		switch {
		case acked == 0:
			probe, wait = true, true
		case acked*2 >= len(round):
			// JetStream is back: everything left goes out at once.
			p.retried.Store(time.Now().UnixNano())
			probe, wait, backoff = false, false, 50*time.Millisecond
		default:
			// Some went through, most did not (a stream refusing some, a limit): all
			// again, after a short pause.
			p.retried.Store(time.Now().UnixNano())
			probe, wait, backoff = false, true, 50*time.Millisecond
		}
	}
	for _, i := range todo {
		pe := pes[i]
		p.log.Error("events could not be published for 10 minutes; dropping them", "event", pe.id, "events", len(pe.types), "subject", pe.subject, "err", errs[i])
		errs[i] = fmt.Errorf("publish event %s: %w", pe.id, errs[i])
	}
}

// copyMsg is m with a header of its own (the data is shared: it is not changed).
func copyMsg(m *nats.Msg) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	c.Data = m.Data
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	return c
}

// Close stops accepting events and waits until the spool is drained or ctx ends.
func (p *Publisher) Close(ctx context.Context) error {
	p.sweep()
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		if p.journal != nil {
			p.journal.close()
		}
		return nil
	case <-ctx.Done():
		// The journal keeps what was not acknowledged: the next start publishes it.
		return fmt.Errorf("audit spool not drained (the spool directory keeps the rest for the next start): %w", ctx.Err())
	}
}
