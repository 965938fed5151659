package session

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// The SQL part of a session: statements (their decisions, references to prepared
// statements and cursors, bound parameters) and result rows recorded in bounded chunks.
// The protocol-neutral part (the event chain, publishing, approvals, the end) is
// session.go; a proxy of another protocol records its requests with Emit and Record.

// SQL is the SQL part of a session's state: what the proxy tells it about names and the
// catalog, and the counts of its statements. Its counters are guarded by the session's mu.
type SQL struct {
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
	s.settle(ctx, q, start, "statement")
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
		Agent:    s.Agent,
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

func (s *Session) countDenied() {
	s.mu.Lock()
	s.denied++
	s.mu.Unlock()
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
	done     atomic.Bool           // Done was recorded: a statement has one completion
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

// Done records the end of the statement, once. status is ok, error, denied, skipped, or
// interrupted (the session ended while the statement ran: revoked, expired, cut off).
func (r *Result) Done(status string) {
	if r.done.Swap(true) {
		return
	}
	r.flush()
	_ = r.s.add(&schemas.DbQueryDone{QueryID: r.q.ID, Status: status, CommandTags: r.tags, Rows: r.total,
		RowsRecorded: r.recorded, Error: r.err, DurationUS: uint64(time.Since(r.q.start).Microseconds())})
	_ = r.s.flushSoon()
}

// minValueBytes is the least of a value a row records, however long the row.
const minValueBytes = 64
