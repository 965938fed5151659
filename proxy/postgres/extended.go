package postgres

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// The extended query protocol: Parse decides a statement, Bind binds it to a portal,
// Execute runs the portal (decided again when the statement ran before), Describe and
// Close pass through, and Sync ends the pipeline. The handlers run on the client loop; the
// backend's answers are routed on the backend loop (backend.go).

// maxPreparedStatements bounds the statement and portal names tracked per session.
const maxPreparedStatements = 10000

// prepared is what the extended protocol's names stand for: each prepared statement's
// decision, each portal's statement and parameters, and what the proxy must remember of
// each statement. Client loop only (no lock); names.go keeps it in step with the names SQL
// creates and drops (PREPARE, DEALLOCATE, DISCARD ALL).
type prepared struct {
	stmts    map[string]*session.Query   // prepared statement name → its decision
	portals  map[string]*portal          // portal name → statement and parameters
	used     map[*session.Query]bool     // executed once already: decided again at the next Execute
	uses     map[*session.Query]bool     // runs names (EXECUTE, FETCH): decided again at every Execute
	ops      map[*session.Query][]nameOp // the names the statement creates or drops (names.go)
	approved map[*session.Query]bool     // approved at its Parse: its first Execute runs on that approval
}

// pipeline is the extended-protocol pipeline from one Sync to the next, as the client loop
// sees it. Client loop only (no lock).
type pipeline struct {
	skipToSync     bool // an error was answered in this pipeline: discard until Sync
	abortAtSync    bool // make the backend fail this pipeline's transaction before the Sync
	sentSinceSync  bool // a message of this pipeline reached the backend
	codeBeforeSync bool // an Execute of a statement that runs unseen code awaits its Sync (meaning.go)
}

// describeCache holds the columns a Describe of each prepared statement reported: its
// later executions may come without a Describe of their own, and their rows are masked by
// these columns. The backend loop writes and reads it; the client loop forgets a statement
// it drops; mu guards it.
type describeCache struct {
	mu   sync.Mutex
	cols map[*session.Query][]schemas.Column
}

// set remembers the columns a Describe of prepared statement q reported.
func (d *describeCache) set(q *session.Query, cols []schemas.Column) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cols == nil {
		d.cols = map[*session.Query][]schemas.Column{}
	}
	if len(d.cols) < maxPreparedStatements {
		d.cols[q] = cols
	}
}

// get returns the columns a Describe of q reported, nil when none did.
func (d *describeCache) get(q *session.Query) []schemas.Column {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cols[q]
}

// forget drops what a Describe of q reported.
func (d *describeCache) forget(q *session.Query) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.cols, q)
}

// portal is a bound statement: what Execute will run, with what.
type portal struct {
	q         *session.Query
	params    [][]byte // copies, up to the recording limit
	formats   []int16
	results   []int16 // result column formats
	truncated bool
}

// newPortal copies Bind's parameters out of the read buffer (which the next message
// reuses), keeping at most limit bytes of values.
func newPortal(q *session.Query, b *pgproto3.Bind, limit int) *portal {
	p := &portal{q: q, formats: slices.Clone(b.ParameterFormatCodes), results: slices.Clone(b.ResultFormatCodes)}
	size := 0
	for _, v := range b.Parameters {
		if size += len(v); size > limit {
			p.truncated = true
			break
		}
		if v == nil {
			p.params = append(p.params, nil)
			continue
		}
		p.params = append(p.params, append(make([]byte, 0, len(v)), v...))
	}
	return p
}

// binary reports whether parameter i is in binary format (Bind's format code rules).
func (p *portal) binary(i int) bool {
	switch len(p.formats) {
	case 0:
		return false
	case 1:
		return p.formats[0] == 1
	}
	return i < len(p.formats) && p.formats[i] == 1
}

// onParse decides a statement as it is prepared: its name stands for this decision until
// the statement is dropped.
func (c *conn) onParse(ctx context.Context, raw, body []byte) ([]byte, error) {
	var p pgproto3.Parse
	if err := p.Decode(body); err != nil {
		return nil, fmt.Errorf("Parse: %w", err)
	}
	if _, exists := c.prep.stmts[p.Name]; exists && p.Name != "" {
		// As PostgreSQL answers it; the name keeps standing for its statement.
		c.failPipeline(duplicateStatement(p.Name))
		return nil, nil
	}
	if _, exists := c.prep.stmts[p.Name]; p.Name != "" && !exists && len(c.prep.stmts) >= maxPreparedStatements { // the unnamed statement is one slot, replaced each time
		c.failPipeline(encode(pgError("ERROR", "53400", fmt.Sprintf("too many prepared statements (limit %d); deallocate some", maxPreparedStatements), "")))
		return nil, nil
	}
	if !utf8.ValidString(p.Query) {
		q := c.sess.Refused(p.Query, "extended", p.Name, invalidUTF8)
		c.sess.NewResult(q).Done("denied")
		c.failPipeline(encode(pgError("ERROR", "22021", invalidUTF8, "")))
		return nil, nil
	}
	q := c.sess.OnQuery(ctx, p.Query, "extended", p.Name)
	if why := c.refusalOf(ctx, q, p.Query); why != nil {
		c.sess.NewResult(q).Done("denied")
		// PostgreSQL fails the pipeline's (implicit or explicit) transaction on an error.
		c.failPipeline(why.response())
		return nil, nil
	}
	c.prepare(p.Name, q)
	c.pipe.sentSinceSync = true
	return raw, c.push(&entry{kind: 'P'})
}

// prepare makes name stand for statement q, with what the proxy must remember of it.
func (c *conn) prepare(name string, q *session.Query) {
	c.dropStatement(name) // the unnamed statement: every Parse replaces it
	c.prep.stmts[name] = q
	if q.Decision.Effect == schemas.EffectRequireApproval {
		// Approved just now: its first Execute runs on this approval even when it is
		// decided again there (a statement that runs another by name is).
		if c.prep.approved == nil {
			c.prep.approved = map[*session.Query]bool{}
		}
		c.prep.approved[q] = true
	}
	if len(c.names.lastOps) > 0 {
		if c.prep.ops == nil {
			c.prep.ops = map[*session.Query][]nameOp{}
		}
		c.prep.ops[q] = c.names.lastOps
	}
	if c.names.lastUses {
		// What it runs is looked up again at every Execute: a cursor may be declared
		// after the FETCH was prepared.
		if c.prep.uses == nil {
			c.prep.uses = map[*session.Query]bool{}
		}
		c.prep.uses[q] = true
	}
}

// onBind binds a portal to its statement, with a copy of its parameters for the record.
func (c *conn) onBind(raw, body []byte) ([]byte, error) {
	var b pgproto3.Bind
	if err := b.Decode(body); err != nil {
		return nil, fmt.Errorf("Bind: %w", err)
	}
	if len(c.prep.portals) < maxPreparedStatements || c.prep.portals[b.DestinationPortal] != nil {
		if q, ok := c.prep.stmts[b.PreparedStatement]; ok {
			c.prep.portals[b.DestinationPortal] = newPortal(q, &b, c.srv.cfg.Limits.MaxSQLBytes)
		} else {
			// An unknown statement: the backend fails the Bind and skips the Execute.
			c.prep.portals[b.DestinationPortal] = &portal{}
		}
	}
	c.pipe.sentSinceSync = true
	return raw, c.push(&entry{kind: 'B'})
}

// onExecute runs a portal bound through the gateway, on its statement's decision (or a new
// one, see executeDecision), and records its Bind.
func (c *conn) onExecute(ctx context.Context, raw, body []byte) ([]byte, error) {
	var e pgproto3.Execute
	if err := e.Decode(body); err != nil {
		return nil, fmt.Errorf("Execute: %w", err)
	}
	p := c.prep.portals[e.Portal]
	if p == nil {
		// Not bound here: a cursor declared in SQL (or nothing). Its rows would reach the
		// client without a decision of their own, so the proxy refuses it.
		c.failPipeline(encode(pgError("ERROR", "34000", fmt.Sprintf("Gatehouse: portal %q was not bound through the gateway; read a cursor declared in SQL with FETCH", e.Portal), "")))
		return nil, nil
	}
	var q *session.Query
	var rm *resultMask
	var ops []nameOp
	if p.q == nil {
		// Bound to an unknown statement: the backend answers with its own error.
		q = c.sess.Unattributed()
	} else {
		var ok bool
		if q, rm, ok = c.executeDecision(ctx, p, e.Portal); !ok {
			return nil, nil
		}
		c.prep.used[p.q] = true
		ops = c.prep.ops[p.q]
	}
	c.pipe.sentSinceSync = true
	en := &entry{kind: 'E', res: c.sess.NewResult(q), mask: rm, ddl: q.Decision.DDL}
	if q.Decision.Code || q.Decision.DDL {
		c.pipe.codeBeforeSync = true
	}
	if len(ops) > 0 {
		en.ops, en.opsQ = slices.Clone(ops), p.q
		c.names.opsInFlight.Add(1)
	}
	return raw, c.push(en)
}

// executeDecision is the decision an Execute of portal p (named name) runs on: its
// statement's, or a new one when the statement ran before or runs others by name. It
// records the Bind, and reports false when the Execute was answered with an error instead.
func (c *conn) executeDecision(ctx context.Context, p *portal, name string) (*session.Query, *resultMask, bool) {
	q, stmt := p.q, p.q
	if c.prep.used[q] || c.prep.uses[q] {
		approved := c.prep.approved[q] && !c.prep.used[q]
		q = c.sess.Reexecute(ctx, q)
		if !q.Decision.Allowed() && !(approved && q.Decision.Effect == schemas.EffectRequireApproval) {
			// The policy changed since the statement was prepared.
			c.sess.NewResult(q).Done("denied")
			c.failPipeline(c.denyResponse(q))
			return nil, nil, false
		}
	}
	rm, err := c.newResultMask(q)
	if err != nil {
		c.failPipeline(encode(pgError("ERROR", "42501", "Gatehouse cannot apply the masking policy: "+err.Error(), "")))
		return nil, nil, false
	}
	if rm != nil {
		rm.stmt, rm.formats = stmt, p.results
		c.sess.Bound(q, name, c.maskParams(rm, p), p.binary, p.truncated)
	} else {
		c.sess.Bound(q, name, p.params, p.binary, p.truncated)
	}
	return q, rm, true
}

// maskParams returns the parameters to record for a masked statement: detectors applied to
// text values (what a caller sends may be as sensitive as what it reads).
func (c *conn) maskParams(rm *resultMask, p *portal) [][]byte {
	if !rm.m.HasDetectors() {
		return p.params
	}
	out := make([][]byte, len(p.params))
	for i, v := range p.params {
		out[i] = v
		if v != nil && !p.binary(i) {
			out[i], _ = rm.m.Detect(v)
		}
	}
	return out
}

// onClose forgets the statement or portal it closes, and forwards it.
func (c *conn) onClose(raw, body []byte) ([]byte, error) {
	var cl pgproto3.Close
	if err := cl.Decode(body); err != nil {
		return nil, fmt.Errorf("Close: %w", err)
	}
	if cl.ObjectType == 'S' {
		c.dropStatement(cl.Name)
	} else {
		delete(c.prep.portals, cl.Name)
	}
	c.pipe.sentSinceSync = true
	return raw, c.push(&entry{kind: 'C'})
}

// onDescribe forwards a Describe; its answer tells the columns of a statement or portal
// (backend.go).
func (c *conn) onDescribe(raw, body []byte) ([]byte, error) {
	var d pgproto3.Describe
	if err := d.Decode(body); err != nil {
		return nil, fmt.Errorf("Describe: %w", err)
	}
	c.pipe.sentSinceSync = true
	en := &entry{kind: 'D', portal: d.ObjectType == 'P'}
	if d.ObjectType == 'S' {
		en.q = c.prep.stmts[d.Name]
	}
	return raw, c.push(en)
}

// describeNextExecute gives the columns of a Describe(portal) to the Execute that follows
// it: Execute itself sends no RowDescription. Backend loop.
func (c *conn) describeNextExecute(cols []schemas.Column) {
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	for _, e := range c.queue.pending[1:] {
		if e.kind == 'E' {
			e.res.Columns(cols)
			if e.mask != nil {
				c.planFor(e.mask, cols)
			}
			return
		}
		if e.kind == 'S' {
			return
		}
	}
}

// onSync ends the pipeline: the backend fails its transaction first when a statement of it
// was refused, and a Sync with nothing of the pipeline sent is answered by the proxy.
func (c *conn) onSync(raw []byte) ([]byte, error) {
	skipped, abort := c.pipe.skipToSync, c.pipe.abortAtSync
	c.pipe.skipToSync, c.pipe.abortAtSync = false, false
	if skipped && !c.pipe.sentSinceSync && !abort {
		c.respond(c.readyForQuery())
		return nil, nil
	}
	c.pipe.sentSinceSync = false
	sync := &entry{kind: 'S', barrier: c.pipe.codeBeforeSync}
	if c.pipe.codeBeforeSync {
		c.pipe.codeBeforeSync = false
		c.tx.codeInFlight.Add(1)
	}
	if abort {
		msgs, entries := c.abortPipeline()
		return append(msgs, raw...), c.push(append(entries, sync)...)
	}
	return raw, c.push(sync)
}

// onFlush forwards a Flush, which has no answer of its own.
func (c *conn) onFlush(raw []byte) ([]byte, error) {
	c.pipe.sentSinceSync = true
	return raw, nil
}

// skipPipeline answers the message with resp and discards the client's messages up to
// the next Sync, as the backend does after an error.
func (c *conn) skipPipeline(resp []byte) {
	c.respond(resp)
	c.pipe.skipToSync = true
}

// failPipeline is skipPipeline, and the backend fails the pipeline's transaction at its
// Sync (abortPipeline) when part of the pipeline reached it or a transaction is open.
func (c *conn) failPipeline(resp []byte) {
	c.skipPipeline(resp)
	c.pipe.abortAtSync = c.pipe.sentSinceSync || c.tx.status.Load() == 'T'
}

// abortPipeline is the proxy's own Parse/Bind/Execute of abortSQL, whose answers are not
// relayed: sent before the Sync of a pipeline in which a statement was refused.
func (c *conn) abortPipeline() ([]byte, []*entry) {
	b := encode(&pgproto3.Parse{Query: abortSQL("42501", "gatehouse: a statement of this transaction was refused by policy")},
		&pgproto3.Bind{}, &pgproto3.Execute{})
	return b, []*entry{{kind: 'P', swallow: true}, {kind: 'B', swallow: true}, {kind: 'E', swallow: true}}
}

// settleExtended asks the backend for its answers to the extended-protocol messages sent
// since the last Sync (a Flush) and waits for them. It reports whether the backend is
// discarding messages until this pipeline's Sync after an error.
func (c *conn) settleExtended() (bool, error) {
	if _, err := c.bw.Write(flushMsg); err != nil {
		return false, err
	}
	if err := c.bw.Flush(); err != nil {
		return false, err
	}
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	for !c.queue.closed {
		if c.queue.skipping.Load() && !slices.ContainsFunc(c.queue.pending, func(e *entry) bool { return e.kind == 'S' }) {
			return true, nil
		}
		if len(c.queue.pending) == 0 {
			return false, nil
		}
		c.queue.cond.Wait()
	}
	return false, net.ErrClosed
}
