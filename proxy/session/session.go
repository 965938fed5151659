// Package session is what every protocol proxy shares: the caller's verified identity, the
// decision client, and the event emitter that numbers and hash-chains a session's events and
// hands them to the publisher. Protocol packages call a Session; they never touch NATS.
package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
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
	ended    bool  // session.end is taken: nothing may follow it
	lingers  bool  // the publisher will flush (buffered mode)
	flushErr error // the last lingering flush failed: the next statement flushes itself

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
	payload  []byte     // scratch for the payload's encoding
	encoded  []byte     // scratch for the event's encoding

	// Resolve, when set, returns the statements that sql runs by name (EXECUTE of a
	// prepared statement, FETCH from a cursor): their decisions bind sql too. It is called
	// on the statement's own goroutine.
	Resolve func(d *schemas.DecisionReply, sql string) []Ref
	// CatalogVersion, when set, is the version of the resource's catalog the proxy has
	// published: decisions are asked, and cached, for it.
	CatalogVersion func() string
	// SchemaChanged, when set, says the session changed the schema in its open
	// transaction (the catalog does not show it yet).
	SchemaChanged func() bool

	grants  map[string]bool // grants statements were allowed under
	queries uint64          // statements received
	denied  uint64          // statements denied (by a rule, or by the gateway)
	held    uint64          // statements held for approval
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
	spill := func() error { _, err := s.sendEncLocked(false, s.pub.tryEnqueue); return err }
	if err := s.encodeRawLocked(taken, spill); err != nil {
		s.mu.Lock()
		s.flushErr = err // the next statement flushes at once, as after a failed sweep
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
	pe := &pending{subject: bus.AuditSubject(s.Resource.Name, s.ID, typ), id: b.firstID, types: b.types, data: b.data, size: int64(len(b.data))}
	if await {
		pe.ack = make(chan error, 1)
	}
	if err := enqueue(pe); err != nil {
		return nil, err
	}
	*b = eventBatch{}
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
}

// Start emits session.start.
func (s *Session) Start(ctx context.Context, p *schemas.SessionStart) error {
	p.AuditMode = s.Resource.Audit
	p.Gateway = s.pub.gateway
	return s.Emit(ctx, p)
}

// Query is one statement the client sent.
type Query struct {
	ID       uint64
	Decision schemas.DecisionReply
	sql      string
	stmtName string
	start    time.Time
	held     []*Query // statements it runs by name whose decisions need approval
}

// Ref is a statement that another runs by name: a prepared statement (EXECUTE), or the
// DECLARE of a cursor (FETCH, MOVE).
type Ref struct {
	Q      *Query
	Cursor bool
}

// ApprovalText is what approvers are shown of q (whose text is sql), and what an approval
// is for: a statement that runs others by name (EXECUTE, FETCH) brings theirs along, so an
// approval is never for a name that could later stand for something else.
func (q *Query) ApprovalText(sql string) string {
	for _, ref := range q.held {
		if ref.stmtName != "" { // prepared with Parse
			sql += "\n-- runs prepared statement " + ref.stmtName + ": " + ref.sql
		} else { // PREPARE or DECLARE in SQL: its text names it
			sql += "\n-- runs: " + ref.sql
		}
	}
	return sql
}

// OnQuery records a statement, asks for a decision and records it. The returned decision is
// the one to enforce; when the audit trail cannot take the events, or the policy service does
// not answer, the decision is a deny that says why (fail closed).
func (s *Session) OnQuery(ctx context.Context, sql, protocol, stmtName string) *Query {
	s.mu.Lock()
	s.queries++
	q := &Query{ID: s.queries, sql: sql, stmtName: stmtName, start: time.Now()}
	s.mu.Unlock()

	text, truncated := sql, false
	if len(text) > s.limits.MaxSQLBytes {
		text, truncated = truncateUTF8(text, s.limits.MaxSQLBytes), true
	}
	if err := s.add(&schemas.DbQuery{QueryID: q.ID, SQL: text, Truncated: truncated, Protocol: protocol, StatementName: stmtName}); err != nil {
		q.Decision = schemas.DecisionReply{Effect: schemas.EffectDeny, Reason: "statement refused: " + err.Error()}
		s.countDenied()
		return q
	}
	start := time.Now()
	q.Decision = s.decider.Decide(ctx, s.request(sql))
	// What a statement does to names is looked at when it may run: allowed, or once
	// approved (an approved PREPARE's EXECUTE needs an approval of its own).
	if s.Resolve != nil && (q.Decision.Allowed() || q.Decision.Effect == schemas.EffectRequireApproval) {
		for _, ref := range s.Resolve(&q.Decision, sql) {
			rd := s.decider.Decide(ctx, s.request(ref.Q.sql))
			if ref.Cursor && rd.Effect == schemas.EffectRequireApproval {
				// The cursor exists because its DECLARE ran, approved: reading it (psql's
				// FETCH_COUNT does, a page at a time) is that one execution, not another.
				continue
			}
			q.Decision = bindReferenced(q.Decision, rd, ref.Q)
			if rd.Effect == schemas.EffectRequireApproval {
				q.held = append(q.held, ref.Q)
			}
		}
	}
	s.mu.Lock()
	s.revision = q.Decision.Revision
	for _, g := range q.Decision.Grants {
		if s.grants == nil {
			s.grants = map[string]bool{}
		}
		s.grants[g] = true
	}
	s.mu.Unlock()
	d := &q.Decision
	err := s.add(decisionEvent(q.ID, d, time.Since(start)))
	if err == nil {
		if s.strict {
			var wait func(context.Context) error
			if wait, err = s.flush(true); err == nil && wait != nil {
				err = wait(ctx)
			}
		} else {
			err = s.flushSoon()
		}
	}
	if err != nil {
		q.Decision = schemas.DecisionReply{Effect: schemas.EffectDeny, Revision: d.Revision, Reason: "statement refused: audit trail unavailable: " + err.Error()}
	}
	switch {
	case q.Decision.Effect == schemas.EffectRequireApproval:
		s.mu.Lock()
		s.held++
		s.mu.Unlock()
	case !q.Decision.Allowed():
		s.countDenied()
	}
	return q
}

// Refused records a statement the proxy refuses without asking the policy (one the backend
// could not read as the policy would, for one): its db.query, with the text made valid
// UTF-8, and a deny decision with the reason.
func (s *Session) Refused(sql, protocol, stmtName, reason string) *Query {
	s.mu.Lock()
	s.queries++
	q := &Query{ID: s.queries, sql: sql, stmtName: stmtName, start: time.Now()}
	s.mu.Unlock()
	text := strings.ToValidUTF8(sql, "\uFFFD")
	truncated := false
	if len(text) > s.limits.MaxSQLBytes {
		text, truncated = truncateUTF8(text, s.limits.MaxSQLBytes), true
	}
	q.Decision = schemas.DecisionReply{Effect: schemas.EffectDeny, Policy: "gatehouse", Reason: reason}
	_ = s.add(&schemas.DbQuery{QueryID: q.ID, SQL: text, Truncated: truncated, Protocol: protocol, StatementName: stmtName})
	_ = s.add(decisionEvent(q.ID, &q.Decision, 0))
	_ = s.flushSoon()
	s.countDenied()
	return q
}

// request is the decision request for sql.
func (s *Session) request(sql string) *schemas.DecisionRequest {
	r := &schemas.DecisionRequest{
		Identity: s.Identity.Identity,
		Claims:   s.Identity.Claims,
		Resource: schemas.Resource{Name: s.Resource.Name, Type: s.Resource.Type, Labels: s.Resource.Labels},
		SQL:      &schemas.SQLRequest{Text: sql},
	}
	if s.CatalogVersion != nil {
		r.SQL.CatalogVersion = s.CatalogVersion()
	}
	if s.SchemaChanged != nil {
		r.SQL.SchemaChanged = s.SchemaChanged()
	}
	return r
}

// bindReferenced applies the decision of a statement that d's statement runs by name (ref):
// a refused one refuses it, one that needs approval needs the same approval (run by
// itself, EXECUTE is held as the statement would be), a masked one masks its results too.
func bindReferenced(d, r schemas.DecisionReply, ref *Query) schemas.DecisionReply {
	what := "prepared statement " + ref.stmtName
	if ref.stmtName == "" {
		what = "a statement prepared or declared earlier"
	}
	held := r.Effect == schemas.EffectRequireApproval && r.Approval != nil
	if held && d.Effect != schemas.EffectDeny && d.Effect != schemas.EffectRequireApproval {
		out := d
		out.Effect, out.Policy, out.Rule, out.Mask, out.Approval = schemas.EffectRequireApproval, r.Policy, r.Rule, nil, r.Approval
		out.Reason = fmt.Sprintf("it runs %s (%q), which needs approval: %s", what, truncateUTF8(ref.sql, 200), r.Reason)
		return out
	}
	if !r.Allowed() && !held {
		out := d
		out.Effect, out.Policy, out.Rule, out.Mask, out.Approval = schemas.EffectDeny, r.Policy, r.Rule, nil, nil
		out.Reason = fmt.Sprintf("it runs %s (%q), which is refused: %s", what, truncateUTF8(ref.sql, 200), r.Reason)
		return out
	}
	if r.Effect != schemas.EffectMask || r.Mask == nil || d.Effect == schemas.EffectRequireApproval {
		return d // an approval covers what it runs, unmasked as approved statements are
	}
	out := d
	if d.Effect != schemas.EffectMask {
		out.Effect, out.Policy, out.Rule = schemas.EffectMask, r.Policy, r.Rule
	}
	m := &schemas.MaskSpec{}
	if d.Mask != nil {
		m.Columns = append(m.Columns, d.Mask.Columns...)
		m.Detectors = append(m.Detectors, d.Mask.Detectors...)
	}
	m.Columns = append(m.Columns, r.Mask.Columns...)
	m.Detectors = append(m.Detectors, r.Mask.Detectors...)
	// The rows are those of the statement run by name (EXECUTE, FETCH): its plan is
	// theirs. Run from a statement of several, the plan cannot be placed, and every column
	// is masked.
	switch {
	case r.Mask.Planned && len(r.Mask.Outputs) == 1 && len(r.Mask.Opaque) == 0 && (d.Mask == nil || len(d.Mask.Outputs) <= 1):
		m.Outputs, m.Planned = r.Mask.Outputs, true
	case d.Mask != nil:
		m.Outputs, m.Planned, m.Opaque = d.Mask.Outputs, d.Mask.Planned, d.Mask.Opaque
	}
	out.Mask = m
	return out
}

// decisionEvent is the decision event for statement id.
func decisionEvent(id uint64, d *schemas.DecisionReply, took time.Duration) *schemas.Decision {
	e := &schemas.Decision{QueryID: id, Effect: d.Effect, Policy: d.Policy, Rule: d.Rule, Reason: d.Reason,
		Revision: d.Revision, Fingerprint: d.Fingerprint, Kinds: d.Kinds, Tables: d.Tables, Cached: d.Cached,
		LatencyUS: uint64(took.Microseconds())}
	if sh := d.Shadow; sh != nil {
		e.ShadowEffect, e.ShadowPolicy, e.ShadowRule, e.ShadowReason = sh.Effect, sh.Policy, sh.Rule, sh.Reason
	}
	if m := d.Mask; m != nil {
		for _, c := range m.Columns {
			e.MaskColumns = append(e.MaskColumns, c.Column+":"+c.Method)
		}
		for _, det := range m.Detectors {
			name := det.Name
			if det.Pattern != "" {
				name += ":" + det.Pattern
			}
			e.MaskDetectors = append(e.MaskDetectors, name+":"+det.Method)
		}
	}
	return e
}

// Reexecute decides and records another execution of a prepared statement: a new db.query
// and the decision it runs under, so that every execution is in the trail and a policy
// change reaches statements prepared before it. The decision usually comes from the cache.
func (s *Session) Reexecute(ctx context.Context, prev *Query) *Query {
	q := s.OnQuery(ctx, prev.sql, "extended", prev.stmtName)
	return q
}

// Bound records the parameters q is executed with. values[i] nil is NULL; binary(i) says
// the value is in binary format (recorded as base64); truncated says values past the
// recording limit were left out.
func (s *Session) Bound(q *Query, portal string, values [][]byte, binary func(i int) bool, truncated bool) {
	params := make([]*string, len(values))
	for i, v := range values {
		if v == nil {
			continue
		}
		str := string(v)
		if binary(i) {
			str = base64.StdEncoding.EncodeToString(v)
		}
		params[i] = &str
	}
	_ = s.add(&schemas.DbBind{QueryID: q.ID, Portal: portal, Params: params, Truncated: truncated})
}

// Unattributed records an execution the proxy cannot tie to a statement (an unknown
// portal); the backend answers it with its own error.
func (s *Session) Unattributed() *Query {
	s.mu.Lock()
	s.queries++
	q := &Query{ID: s.queries, start: time.Now()}
	s.mu.Unlock()
	_ = s.add(&schemas.DbQuery{QueryID: q.ID, Protocol: "extended", StatementName: "(unknown portal)"})
	_ = s.flushSoon()
	return q
}

// UsedGrant reports whether a statement of the session was allowed while the caller held
// grant id.
func (s *Session) UsedGrant(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants[id]
}

// Record adds an event to the session's trail (approvals, terminations).
func (s *Session) Record(p schemas.Payload) {
	if err := s.add(p); err == nil {
		_ = s.flushSoon()
	}
}

func (s *Session) countDenied() {
	s.mu.Lock()
	s.denied++
	s.mu.Unlock()
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
	err := s.encodeRawLocked(taken, func() error { _, err := s.sendEncLocked(false, s.pub.enqueue); return err })
	if _, serr := s.sendEncLocked(false, s.pub.enqueue); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	if err := s.encodeLocked(p, time.Now(), revision); err != nil {
		return nil, err
	}
	if key := s.pub.sealKey; key != nil {
		if err := s.encodeLocked(key.Seal(s.ID, s.seq, string(s.prevHex[:s.prevLen])), time.Now(), revision); err != nil {
			return nil, err
		}
	}
	return s.sendEncLocked(s.strict, s.pub.enqueue)
}

// Result records the rows of one statement in bounded chunks, as they were sent.
type Result struct {
	s        *Session
	q        *Query
	chunk    uint32
	columns  []schemas.Column
	formats  []int16
	rows     [][]*string
	size     int
	total    uint64
	recorded uint64
	first    uint64
	recBytes int
	tags     []string
	err      *schemas.SQLError
	masked   []schemas.MaskedCount // this chunk's, by column
	cut      uint32                // this chunk's values recorded in part
}

// NewResult starts recording the results of q.
func (s *Session) NewResult(q *Query) *Result { return &Result{s: s, q: q} }

// Columns starts a result set (RowDescription).
func (r *Result) Columns(cols []schemas.Column) {
	r.flush()
	r.columns = cols
	r.formats = make([]int16, len(cols))
	for i, c := range cols {
		r.formats[i] = c.Format
	}
}

// Row records one row as sent to the client. values[i] nil is SQL NULL.
func (r *Result) Row(values [][]byte) {
	r.total++
	if r.recBytes >= r.s.limits.MaxResultBytes {
		return
	}
	row := make([]*string, len(values))
	// A row records at most ResultChunkBytes (each value at least minValueBytes): one huge
	// value (PostgreSQL allows a gigabyte) would otherwise make an event no message can
	// carry, and the whole event would be lost.
	budget := r.s.limits.ResultChunkBytes
	for i, v := range values {
		if v == nil {
			continue
		}
		limit := max(budget, minValueBytes)
		binary := i < len(r.formats) && r.formats[i] == 1
		var str string
		if binary {
			if n := limit / 4 * 3; len(v) > n {
				v = v[:n]
				r.cut++
			}
			str = base64.StdEncoding.EncodeToString(v)
		} else {
			if len(v) > limit {
				v = []byte(truncateUTF8(string(v[:limit+min(3, len(v)-limit)]), limit))
				r.cut++
			}
			str = string(v)
		}
		budget -= len(str)
		row[i] = &str
		r.size += len(str)
		r.recBytes += len(str)
	}
	r.size += 8 * len(values)
	if len(r.rows) == 0 {
		r.first = r.total - 1
	}
	r.rows = append(r.rows, row)
	r.recorded++
	if r.size >= r.s.limits.ResultChunkBytes {
		r.flush()
	}
}

// Masked counts n values of result column col that were masked (by a source column's rule
// or by detectors) before they were sent and recorded.
func (r *Result) Masked(col int, name, by, method string, n int) {
	for i := range r.masked {
		if m := &r.masked[i]; m.Column == uint32(col) && m.By == by {
			m.Count += uint64(n)
			return
		}
	}
	r.masked = append(r.masked, schemas.MaskedCount{Column: uint32(col), Name: name, By: by, Method: method, Count: uint64(n)})
}

// Tag records a CommandComplete tag.
func (r *Result) Tag(tag string) {
	r.flush()
	r.tags = append(r.tags, tag)
}

// Error records the error the client got.
// A message longer than maxErrorBytes is recorded in part (PostgreSQL quotes input
// values in messages: invalid input syntax for type integer: "...").
func (r *Result) Error(sqlstate, message, from string) {
	if len(message) > maxErrorBytes {
		message = truncateUTF8(message, maxErrorBytes) + " …"
	}
	r.err = &schemas.SQLError{Sqlstate: sqlstate, Message: message, From: from}
}

const maxErrorBytes = 8 << 10

func (r *Result) flush() {
	if len(r.rows) == 0 && r.columns == nil {
		return
	}
	if len(r.rows) == 0 && r.chunk > 0 {
		return
	}
	_ = r.s.add(&schemas.DbResultChunk{QueryID: r.q.ID, Chunk: r.chunk, Columns: r.columns, Rows: r.rows, FirstRow: r.first, Masked: r.masked, ValuesTruncated: r.cut})
	r.masked, r.cut = nil, 0
	r.chunk++
	// Long results go out as they come, a few chunks per message.
	if r.chunk%4 == 0 {
		_ = r.s.flushSoon()
	}
	r.columns, r.rows, r.size = nil, nil, 0
}

// Done records the end of the statement. status is ok, error, denied or skipped.
func (r *Result) Done(status string) {
	r.flush()
	_ = r.s.add(&schemas.DbQueryDone{QueryID: r.q.ID, Status: status, CommandTags: r.tags, Rows: r.total,
		RowsRecorded: r.recorded, Error: r.err, DurationUS: uint64(time.Since(r.q.start).Microseconds())})
	_ = r.s.flushSoon()
}

// minValueBytes is the least of a value a row records, however long the row.
const minValueBytes = 64

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
