// Package session is what every protocol proxy shares: the caller's verified identity, the
// decision client, and the event emitter that numbers and hash-chains a session's events and
// hands them to the publisher. Protocol packages call a Session; they never touch NATS.
package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Limits bound what one session records.
type Limits struct {
	ResultChunkBytes int
	MaxResultBytes   int
	MaxSQLBytes      int
}

// Session is one authenticated client connection to one resource.
type Session struct {
	ID       string
	Identity *identity.Identity
	Resource *config.Resource
	// Agent is the tool call of the gateway's MCP server the session runs for (AgentCalls),
	// or nil; set before Start. Every decision request of the session carries it.
	Agent *schemas.AgentRequest

	pub     *Publisher
	decider Decider
	limits  Limits
	strict  bool
	start   time.Time

	// Recording is two steps under two locks, so that a statement never waits while
	// another goroutine encodes a batch: add appends the event to raw under mu (brief);
	// flush takes raw and encodes it into the hash chain and the batch under enc, then
	// hands the batch to the publisher. Lock order: enc, then mu.
	mu       sync.Mutex
	raw      []rawEvent // recorded, not yet encoded
	revision uint64
	ended    bool        // session.end is taken: nothing may follow it
	lingers  bool        // the publisher will flush (buffered mode)
	flushErr error       // the last lingering flush failed: the next statement flushes itself
	stalled  atomic.Bool // the batch is at maxStalledBatch and the spool refuses it

	enc      sync.Mutex // orders seq, the hash chain and the batch
	seq      uint64
	prevHex  [2 * sha256.Size]byte // the previous event's hash, hex
	prevLen  int                   // 0 before the first event, then len(prevHex)
	id       [36]byte              // scratch for an event's ID
	sum      [sha256.Size]byte     // scratch for an event's hash
	envelope *schemas.EnvelopeEncoder
	batch    eventBatch
	taken    []rawEvent // raw taken for encoding (spare slice, swapped with raw)
	hasher   hash.Hash  // SHA-256, reused
	subject  string     // the audit subject's prefix, gh.audit.<resource>.<session>.
	payload  []byte     // scratch for the payload's encoding
	encoded  []byte     // scratch for the event's encoding

	// SQL is what only SQL sessions have (sql.go).
	SQL
}

// New opens a session. It emits nothing until Start.
func New(id *identity.Identity, res *config.Resource, pub *Publisher, decider Decider, limits Limits) *Session {
	return &Session{ID: newID(), Identity: id, Resource: res, pub: pub, decider: decider, limits: limits,
		strict: res.Audit == "strict", start: time.Now(), hasher: sha256.New()}
}

func init() {
	// Event IDs are not secrets: drawing their randomness from a buffered pool of
	// crypto/rand bytes saves a getrandom call per event on the statement path.
	uuid.EnableRandPool()
}

func newID() string {
	var b [36]byte
	newIDInto(&b)
	return string(b[:])
}

// newIDInto writes a new UUIDv7 (a random one if the clock or randomness fails) into b,
// in its canonical form.
func newIDInto(b *[36]byte) {
	u, err := uuid.NewV7()
	if err != nil {
		u = uuid.New()
	}
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
}

// Emit records a lifecycle event (session.start, session.end, auth.failed) as a message of
// its own, after whatever the session still holds. In strict mode it returns only once
// JetStream has acknowledged it; in buffered mode once it is in the spool.
func (s *Session) Emit(ctx context.Context, p schemas.Payload) error {
	s.enc.Lock()
	if _, err := s.flushEncLocked(false, s.pub.enqueue, false); err != nil {
		s.enc.Unlock()
		return err
	}
	s.mu.Lock()
	ended, revision := s.ended, s.revision
	s.mu.Unlock()
	if ended {
		s.enc.Unlock()
		return ErrEnded
	}
	if err := s.encodeLocked(p, time.Now(), revision); err != nil {
		s.enc.Unlock()
		return err
	}
	wait, err := s.sendEncLocked(s.strict, s.pub.enqueue)
	s.enc.Unlock()
	if err != nil || wait == nil {
		return err
	}
	return wait(ctx)
}

// add records an event in the session's batch; flush sends the batch. JetStream's cost is
// per message, so a statement's events share messages: in strict mode two (the statement
// with its decision, then its results with its end); in buffered mode the events of all
// statements within the linger time (flushSoon).
func (s *Session) add(p schemas.Payload) error {
	if s.stalled.Load() {
		return ErrStalled
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrEnded
	}
	s.raw = append(s.raw, rawEvent{p: p, t: time.Now(), revision: s.revision})
	return nil
}

func (s *Session) flush(await bool) (func(context.Context) error, error) {
	s.enc.Lock()
	defer s.enc.Unlock()
	return s.flushEncLocked(await, s.pub.enqueue, false)
}

// lingerBytes is about how much a batch holds at most (its buffer's size): past it, the
// events that follow go in the next message.
const lingerBytes = 64 << 10

// flushSoon sends the batch now in strict mode (or with lingering off), and otherwise lets
// it linger so that the next statements' events share its message. A batch that has grown
// large, or whose last lingering flush failed, is sent now: the error (a full spool) then
// refuses the statement, as an immediate flush would.
func (s *Session) flushSoon() error {
	s.mu.Lock()
	if s.strict || s.pub.linger <= 0 || len(s.raw) >= maxRawEvents || s.flushErr != nil {
		s.mu.Unlock()
		_, err := s.flush(false)
		return err
	}
	if len(s.raw) > 0 && !s.lingers {
		s.lingers = true
		s.pub.later(s)
	}
	s.mu.Unlock()
	return nil
}

// flushLingering is the publisher's flush of a lingering batch. It does not wait for room
// in the spool: on failure the batch stays, and the session's next statement flushes it.
func (s *Session) flushLingering() {
	s.enc.Lock()
	defer s.enc.Unlock()
	if _, err := s.flushEncLocked(false, s.pub.tryEnqueue, true); err != nil {
		s.mu.Lock()
		s.flushErr = err
		s.mu.Unlock()
	}
}

// EncodePending encodes, in the calling goroutine, the events a buffered session has
// recorded and not yet encoded; they go out with the batch as before (at the publisher's
// linger sweep, or when the batch is full). The proxy calls it once a statement's answer
// has reached its client, so that encoding is spread over the sessions' own goroutines, a
// few microseconds at a time, rather than done for every session in one burst by the
// sweep's single goroutine, which held up other sessions' goroutines queued behind it (an
// execution trace at 8 clients put that burst behind most scheduling delays over 0.5 ms).
// It never waits: when the sweep is encoding this session, it leaves the work to it.
func (s *Session) EncodePending() {
	if !s.enc.TryLock() {
		return
	}
	defer s.enc.Unlock()
	s.mu.Lock()
	if len(s.raw) == 0 || s.strict {
		s.mu.Unlock()
		return
	}
	taken := s.takeRawLocked()
	s.mu.Unlock()
	s.encodeTakenLocked(taken)
}

// encodeTakenLocked (enc held) encodes taken events into the batch, handing full batches
// to the spool when it has room now; a failure makes the next statement flush at once, as
// after a failed sweep.
func (s *Session) encodeTakenLocked(taken []rawEvent) {
	spill := func() error { _, err := s.sendEncLocked(false, s.pub.tryEnqueue); return err }
	if err := s.encodeRawLocked(taken, spill); err != nil {
		s.mu.Lock()
		s.flushErr = err
		s.mu.Unlock()
	}
}

var emptyHash = []byte(`"hash":"","payload":`)

// rawEvent is an event recorded but not yet encoded: buffered sessions encode their events
// off the statement's path: once its answer is with the client (EncodePending), or when the
// batch goes out (the publisher's sweep).
type rawEvent struct {
	p        schemas.Payload
	t        time.Time
	revision uint64
}

// maxRawEvents bounds the events a session holds unencoded; past it they are encoded and
// sent at once.
const maxRawEvents = 512

// ErrEnded is returned for events after session.end: the chain is sealed.
var ErrEnded = errors.New("session ended")

// takeRawLocked (enc and mu held) takes the events recorded so far for encoding.
func (s *Session) takeRawLocked() []rawEvent {
	taken := s.raw
	s.raw = s.taken[:0]
	s.taken = nil
	return taken
}

// encodeRawLocked (enc held) encodes taken events into the batch, in order. An event that
// cannot be encoded is dropped (never retried forever) and the error returned after the
// others are encoded. With spill, a batch that has reached lingerBytes is handed over
// before the next event, so that a busy session's messages stay small (a NATS server's
// max_payload is 1 MiB unless configured otherwise; a result streams 64 KiB chunks); when
// the spool refuses a spill, the rest goes into the batch as before.
func (s *Session) encodeRawLocked(taken []rawEvent, spill func() error) error {
	var first error
	for _, r := range taken {
		if spill != nil && len(s.batch.data) >= lingerBytes {
			if err := spill(); err != nil {
				spill = nil
			}
		}
		if err := s.encodeLocked(r.p, r.t, r.revision); err != nil && first == nil {
			first = err
		}
	}
	clear(taken)
	if cap(taken) <= maxRawEvents {
		s.taken = taken[:0]
	}
	return first
}

func (s *Session) encodeLocked(p schemas.Payload, t time.Time, revision uint64) error {
	s.payload = p.AppendJSON(s.payload[:0])
	newIDInto(&s.id)
	typ := p.EventType()
	// One encoding serves both the hash (over the event with hash empty, as
	// Event.ComputeHash defines it) and the message: the hash is spliced in afterwards.
	// The payload is the envelope's last field, so the empty hash sits right before it.
	if s.envelope == nil {
		s.envelope = schemas.NewEnvelopeEncoder(s.ID, &s.Identity.Identity, s.Resource.Name)
	}
	data := s.envelope.AppendUnhashed(s.encoded[:0], s.id[:], typ, schemas.Codes[typ], t.UTC().Truncate(time.Microsecond),
		s.seq+1, revision, s.prevHex[:s.prevLen], s.payload)
	s.encoded = data
	i := len(data) - 1 - len(s.payload) - len(emptyHash)
	if i < 0 || !bytes.Equal(data[i:i+len(emptyHash)], emptyHash) {
		return fmt.Errorf("encode event %s: envelope without hash field", s.id[:])
	}
	h := s.hasher
	h.Reset()
	h.Write(s.prevHex[:s.prevLen])
	h.Write([]byte{'\n'})
	h.Write(data)
	hex.Encode(s.prevHex[:], h.Sum(s.sum[:0]))
	s.prevLen = len(s.prevHex)
	b := &s.batch
	if b.data == nil {
		b.data, b.types = getBatchBuf(), getTypes()
	}
	if b.n > 0 {
		b.data = append(b.data, '\n')
	} else {
		b.firstID, b.firstType = string(s.id[:]), typ
	}
	if b.n == b.jn {
		b.jfrom, b.jfirst = len(b.data), s.id
	}
	b.data = append(b.data, data[:i+len(`"hash":"`)]...)
	b.data = append(b.data, s.prevHex[:]...)
	b.data = append(b.data, data[i+len(`"hash":"`):]...)
	b.types = append(b.types, typ)
	b.n++
	s.seq++
	// Keep small scratch buffers; a large result chunk's are not held by an idle session.
	if cap(s.encoded) > 16<<10 {
		s.payload, s.encoded = nil, nil
	}
	return nil
}

// flushEncLocked (enc held) encodes what was recorded and hands the batch to the
// publisher. When the spool is full the batch stays with the session (the chain stays
// whole) and goes out with the next flush. lingering is the publisher's sweep: it does
// nothing unless the session asked for it.
func (s *Session) flushEncLocked(await bool, enqueue func(*pending) error, lingering bool) (func(context.Context) error, error) {
	s.mu.Lock()
	if lingering && !s.lingers {
		s.mu.Unlock()
		return nil, nil
	}
	taken := s.takeRawLocked()
	s.lingers = false
	s.mu.Unlock()
	var spill func() error
	if !await {
		spill = func() error { _, err := s.sendEncLocked(false, enqueue); return err }
	}
	if err := s.encodeRawLocked(taken, spill); err != nil {
		return nil, err
	}
	return s.sendEncLocked(await, enqueue)
}

// sendEncLocked (enc held) hands the encoded batch to the publisher.
func (s *Session) sendEncLocked(await bool, enqueue func(*pending) error) (func(context.Context) error, error) {
	b := &s.batch
	if b.n == 0 {
		return nil, nil
	}
	typ := b.firstType
	if b.n > 1 {
		typ = BatchSubjectToken
	}
	if err := s.journalLocked(); err != nil {
		s.stallIfFull()
		return nil, err
	}
	pe := &pending{subject: bus.AuditSubject(s.Resource.Name, s.ID, typ), id: b.firstID, types: b.types, data: b.data, size: int64(len(b.data)), segs: b.segs}
	if await {
		pe.ack = make(chan error, 1)
	}
	if err := enqueue(pe); err != nil {
		s.stallIfFull()
		return nil, err
	}
	*b = eventBatch{}
	s.stalled.Store(false)
	s.mu.Lock()
	s.flushErr = nil
	s.mu.Unlock()
	if !await {
		return nil, nil
	}
	return func(ctx context.Context) error {
		select {
		case err := <-pe.ack:
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for JetStream to acknowledge %s: %w", typ, ctx.Err())
		}
	}, nil
}

// maxStalledBatch bounds the batch of a session whose events the spool does not take (a
// full disk, JetStream away for long): past it the session records nothing more and
// refuses what would need recording (ErrStalled), and the publisher keeps offering the
// batch until it is taken. It stays well inside a segment and NATS's 1 MiB max_payload.
const maxStalledBatch = 512 << 10

// ErrStalled refuses what a session would record while its batch waits for the spool.
var ErrStalled = errors.New("audit spool unavailable: this session's recorded events wait for room (disk full or JetStream unreachable)")

// stallIfFull (enc held), after the spool refused the batch: a batch at its bound stops
// the session recording, and the publisher retries it.
func (s *Session) stallIfFull() {
	if len(s.batch.data) >= maxStalledBatch && !s.stalled.Swap(true) {
		s.pub.strand(s)
	}
}

// retryStranded (enc free) offers the session's batch to the spool again.
func (s *Session) retryStranded() bool {
	s.enc.Lock()
	defer s.enc.Unlock()
	if s.batch.n == 0 {
		s.stalled.Store(false)
		return true
	}
	_, err := s.sendEncLocked(false, s.pub.tryEnqueue)
	return err == nil
}

// journalLocked (enc held) writes the batch's events not yet in the spool's journal to it,
// as one record.
func (s *Session) journalLocked() error {
	j, b := s.pub.journal, &s.batch
	if j == nil || b.n == b.jn {
		return nil
	}
	typ := BatchSubjectToken
	if b.n-b.jn == 1 {
		typ = b.types[b.jn]
	}
	if s.subject == "" {
		s.subject = bus.AuditSubject(s.Resource.Name, s.ID, "")
	}
	seg, err := j.write(s.subject, typ, b.jfirst[:], b.data[b.jfrom:])
	if err != nil {
		return err
	}
	b.jn = b.n
	if k := len(b.segs); k > 0 && b.segs[k-1].seg == seg {
		b.segs[k-1].n++
	} else {
		b.segs = append(b.segs, segRef{seg, 1})
	}
	return nil
}

// Durable makes what the session has recorded outlive this process before the proxy tells
// its client that a statement is complete: in strict mode JetStream has acknowledged it;
// in buffered mode it is in the spool's journal (and goes to JetStream with its batch as
// before). Without a journal, buffered mode promises nothing more than the memory spool.
// An error means the completion must not reach the client (the proxy ends the session).
func (s *Session) Durable(ctx context.Context) error {
	if s.strict {
		return s.Flush(ctx)
	}
	if s.pub.journal == nil {
		return s.flushSoon()
	}
	s.enc.Lock()
	defer s.enc.Unlock()
	s.mu.Lock()
	taken := s.takeRawLocked()
	s.mu.Unlock()
	s.encodeTakenLocked(taken)
	return s.journalLocked()
}

// BatchSubjectToken ends the subject of a message that holds several events (newline-
// separated JSON, in sequence order); a message with one event ends with its type.
const BatchSubjectToken = "batch"

// eventBatch is the encoded events a session has not handed to the publisher yet.
type eventBatch struct {
	data      []byte
	firstID   string
	firstType string
	types     []string
	n         int

	// The journal's part (journal.go): the first jn events are written to it, in the
	// records segs counts; the others start at data[jfrom:], the first of them jfirst.
	jn     int
	jfrom  int
	jfirst [36]byte
	segs   []segRef
}

// Start emits session.start.
func (s *Session) Start(ctx context.Context, p *schemas.SessionStart) error {
	if err := s.pub.admit(); err != nil {
		return err
	}
	p.AuditMode = s.Resource.Audit
	p.Gateway = s.pub.gateway
	return s.Emit(ctx, p)
}

// Record adds an event to the session's trail (approvals, terminations).
func (s *Session) Record(p schemas.Payload) {
	if err := s.add(p); err == nil {
		_ = s.flushSoon()
	}
}

// End emits session.end. reason is one of client_closed, client_error, backend_closed,
// shutdown.
func (s *Session) End(ctx context.Context, reason string, cause error, bytesIn, bytesOut uint64) error {
	s.mu.Lock()
	p := &schemas.SessionEnd{Reason: reason, Statements: s.queries, Denied: s.denied, Held: s.held,
		DurationUS: uint64(time.Since(s.start).Microseconds()), BytesIn: bytesIn, BytesOut: bytesOut}
	s.mu.Unlock()
	if cause != nil {
		p.Error = cause.Error()
	}
	// What the session still holds, then session.end (and the seal over the chain up to
	// it) in a message of their own; nothing recorded after it is taken.
	s.enc.Lock()
	wait, err := s.endLocked(p)
	s.enc.Unlock()
	if err != nil || wait == nil {
		return err
	}
	return wait(ctx)
}

func (s *Session) endLocked(p *schemas.SessionEnd) (func(context.Context) error, error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil, ErrEnded
	}
	s.ended = true
	taken, revision := s.takeRawLocked(), s.revision
	s.lingers = false
	s.mu.Unlock()
	// What the session still holds goes first; when the spool cannot take it (a full
	// disk, a full spool), session.end and the seal follow it in the same batch, which
	// the publisher hands over once it can (strand): the end is recorded either way.
	_ = s.encodeRawLocked(taken, func() error { _, err := s.sendEncLocked(false, s.pub.enqueue); return err })
	_, _ = s.sendEncLocked(false, s.pub.enqueue)
	if err := s.encodeLocked(p, time.Now(), revision); err != nil {
		return nil, err
	}
	if key := s.pub.sealKey; key != nil {
		if err := s.encodeLocked(key.Seal(s.ID, s.seq, string(s.prevHex[:s.prevLen])), time.Now(), revision); err != nil {
			return nil, err
		}
	}
	wait, err := s.sendEncLocked(s.strict, s.pub.enqueue)
	if err != nil {
		s.pub.strand(s)
		return nil, fmt.Errorf("%w (kept: handed to the spool once it takes it)", err)
	}
	return wait, nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
