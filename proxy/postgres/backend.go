package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/schemas"
)

// The backend side of a session: the backend loop reads the backend's messages, gives each
// to the entry it answers (the head of the answer queue: relay.go), records and masks
// results, and relays the messages to the client. Everything here runs on the backend
// loop; the COPY and function call answers are in their own files.

// maxBackendMessage is PostgreSQL's own limit on a message (1 GB).
const maxBackendMessage = 1 << 30

// txState is what the backend's answers say of its transaction, and of the statements in
// flight that may change what later ones mean (meaning.go). Atomics: each has one writer
// loop and readers on the other.
type txState struct {
	// The last ReadyForQuery status: written by the backend loop, read by the client loop
	// for the proxy's own answers.
	status atomic.Uint32
	// Barrier entries not yet answered: the client loop adds one for every statement that
	// runs unseen code (or changes the schema) and waits for none to be left before the
	// next statement (waitCode); release takes them off, with queue.mu held.
	codeInFlight atomic.Int32
	// A schema change was answered (backend loop); the catalog is stale once it is
	// committed. The session reads it (SchemaChanged) when it decides on the client loop.
	ddlDone atomic.Bool
}

// answer is one backend message on its way to the client, and what the backend loop
// learns of it. Backend loop only.
type answer struct {
	typ       byte
	raw, body []byte // raw is what the client gets: masking may put another message in its place
	head      *entry // the entry it answers (the oldest one waiting), nil when none waits
	popped    bool   // the message completes head
	skipped   bool   // ReadyForQuery: the backend skipped to the Sync after an error
}

// backendLoop relays backend messages to the client and records results.
func (c *conn) backendLoop() error {
	r := &msgReader{r: bufio.NewReaderSize(c.backend, 16<<10), max: maxBackendMessage}
	var values [][]byte // a DataRow's values, the same slice from row to row
	for {
		typ, raw, body, err := r.next()
		if err != nil {
			c.setReason("backend_closed")
			c.closeBoth()
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("backend: %w", err)
		}
		m := answer{typ: typ, raw: raw, body: body, head: c.head()}
		if stop, err := c.route(&m, &values); stop {
			return err
		}
		if !c.forward(&m, r) {
			return nil
		}
	}
}

// route gives message m to the entry it answers, by type. It reports stop when the loop is
// to end (the session is over, and err says why when it is an error).
func (c *conn) route(m *answer, values *[][]byte) (stop bool, err error) {
	head := m.head
	switch m.typ {
	case '1', '2', '3': // ParseComplete, BindComplete, CloseComplete
		m.popped = head != nil && (head.kind == 'P' || head.kind == 'B' || head.kind == 'C')
	case 'n': // NoData answers a Describe
		m.popped = head != nil && head.kind == 'D'
	case 'T':
		c.onRowDescription(m)
	case 'D':
		if err := c.onDataRow(m, values); err != nil {
			return true, err
		}
	case 'H': // CopyOutResponse: CopyData follows
		if err := c.onCopyOutResponse(m); err != nil {
			return true, err
		}
	case 'd': // CopyData of COPY TO STDOUT
		c.onCopyData(m)
	case 'V': // FunctionCallResponse
		c.onFunctionCallResponse(m)
	case 'S': // ParameterStatus
		return c.onParameterStatus(m), nil
	case 'C', 'I', 's':
		c.onCommandDone(m)
	case 'N':
		if raw, ok := disownNotice(m.body); ok {
			m.raw, m.body = raw, raw[5:]
		}
		if head != nil && head.mask != nil {
			m.raw, _ = maskNotice(head.mask, 'N', m.body)
		}
	case 'E':
		c.onBackendError(m)
	case 'Z':
		c.onReadyForQuery(m)
	}
	return false, nil
}

// onRowDescription gives a statement's result columns to its record and its masking: a
// simple query's, a described prepared statement's, or those of the Execute that follows
// a described portal.
func (c *conn) onRowDescription(m *answer) {
	var rd pgproto3.RowDescription
	head := m.head
	if err := rd.Decode(m.body); err != nil || head == nil {
		return
	}
	cols := make([]schemas.Column, len(rd.Fields))
	for i, f := range rd.Fields {
		cols[i] = schemas.Column{Name: string(f.Name), TableOID: f.TableOID, Attnum: f.TableAttributeNumber, TypeOID: f.DataTypeOID, Format: f.Format}
	}
	switch head.kind {
	case 'Q':
		if head.res != nil {
			head.res.Columns(cols)
		}
		if head.mask != nil {
			c.planFor(head.mask, cols)
		}
	case 'D':
		if head.portal {
			c.describeNextExecute(cols)
		} else if head.q != nil {
			c.described.set(head.q, cols)
		}
		m.popped = true
	}
}

// onDataRow answers the proxy's own query that waits for it, or records the row for its
// statement, masked first where the statement's results are.
func (c *conn) onDataRow(m *answer, values *[][]byte) error {
	head := m.head
	if head != nil && head.kind == 'R' {
		if v, err := dataRowValues(m.body, nil); err == nil && len(v) > 0 && !head.found {
			head.lookup <- lookupResult{value: string(v[0])}
			head.found = true
		}
		return nil
	}
	if head == nil || head.res == nil {
		return nil
	}
	var err error
	if *values, err = dataRowValues(m.body, *values); err == nil {
		if head.mask != nil {
			m.raw = c.maskRow(head.mask, head.res, m.raw, *values)
		}
		head.res.Row(*values)
	} else if head.mask != nil {
		// A row the proxy cannot read is not sent unmasked.
		c.setReason("backend_error")
		c.writeClient(encode(pgError("FATAL", "08P01", "malformed DataRow from the backend: "+err.Error(), "")), true)
		c.closeBoth()
		return fmt.Errorf("backend: malformed DataRow: %w", err)
	}
	return nil
}

// onParameterStatus ends the session when the backend reports that a pinned setting
// changed (meaning.go); it reports whether it did.
func (c *conn) onParameterStatus(m *answer) bool {
	if name, value, ok := parameterStatus(m.body); ok {
		if want, pinned := pinnedSettings[name]; pinned && value != want {
			c.settingChanged(name, value)
			return true
		}
	}
	return false
}

// onCommandDone handles the end of a statement's results (CommandComplete,
// EmptyQueryResponse) or of an Execute's batch of them (PortalSuspended): the next
// statement's masking, a schema change, the tag, what the statement did to names, and an
// Execute's end.
func (c *conn) onCommandDone(m *answer) {
	head := m.head
	if head != nil && head.mask != nil && head.kind == 'Q' && m.typ != 's' {
		head.mask.nextStatement()
	}
	if head != nil && head.ddl {
		c.tx.ddlDone.Store(true)
	}
	if head == nil || head.res == nil {
		return
	}
	if m.typ == 'C' {
		tag, _, _ := cstring(m.body)
		head.res.Tag(tag)
		if len(head.ops) > 0 && tag == head.ops[0].tag() {
			c.noteNameChange(nameChange{op: head.ops[0], q: head.opsQ})
			head.ops = head.ops[1:]
		}
	}
	if head.kind == 'E' {
		head.res.Done("ok")
		m.popped = true
	}
}

// onBackendError records an ErrorResponse for the entry it answers (masked first where
// the statement's results are: PostgreSQL may quote a value in it). After an error in the
// extended protocol the backend skips to the Sync: the client loop is told.
func (c *conn) onBackendError(m *answer) {
	head := m.head
	if head != nil && head.mask != nil {
		m.raw, _ = maskNotice(head.mask, 'E', m.body)
		m.body = m.raw[5:]
	}
	var er pgproto3.ErrorResponse
	_ = er.Decode(m.body)
	if head == nil {
		return
	}
	if head.kind == 'R' && !head.found {
		head.lookup <- lookupResult{err: errors.New(er.Message)}
		head.found = true
	}
	head.errSeen = true
	if head.res != nil {
		head.res.Error(er.Code, er.Message, "backend")
	}
	switch head.kind {
	case 'E':
		if head.res != nil {
			head.res.Done("error")
		}
		m.popped = true
	case 'P', 'B', 'C', 'D':
		// The backend now skips to Sync; what is left is closed at ReadyForQuery.
		m.popped = true
	}
	if head.kind == 'P' || head.kind == 'B' || head.kind == 'C' || head.kind == 'D' || head.kind == 'E' {
		c.queue.mu.Lock()
		c.queue.skipping.Store(true)
		c.queue.cond.Broadcast()
		c.queue.mu.Unlock()
	}
}

// onReadyForQuery notes the transaction status, marks the catalog stale after a committed
// schema change, and whether the backend skipped to this Sync after an error.
func (c *conn) onReadyForQuery(m *answer) {
	if len(m.body) == 1 {
		c.tx.status.Store(uint32(m.body[0]))
		// A schema change is seen by the catalog's own connection once committed.
		if m.body[0] == 'I' && c.tx.ddlDone.Swap(false) {
			c.srv.cats.markStale(c.st.resource)
		}
	}
	m.skipped = c.queue.skipping.Swap(false)
}

// durableLocked (wmu held) makes what the session recorded outlive this process before a
// ReadyForQuery in the client's buffer leaves it: the client learns from it that its
// statements are complete (their completions are recorded by then: advance). In buffered
// mode that is a write to the spool's journal, in strict mode JetStream's acknowledgement.
func (c *conn) durableLocked() error {
	if !c.completion {
		return nil
	}
	if err := c.sess.Durable(context.Background()); err != nil {
		return err
	}
	c.completion = false
	return nil
}

// gatewayPrefix starts the messages the gateway itself sends its clients.
const gatewayPrefix = "Gatehouse:"

// disownNotice re-labels a backend NOTICE whose message starts as the gateway's own do
// (a RAISE NOTICE in a function, say): clients — the MCP server among them, which parks a
// statement on the hold notice — must be able to trust that "Gatehouse:" is the gateway
// speaking. It returns the message to send instead, when it changed it.
func disownNotice(body []byte) ([]byte, bool) {
	fields, ok := noticeFields(body)
	if !ok {
		return nil, false
	}
	changed := false
	for i, f := range fields {
		if f[0] == "M" && strings.HasPrefix(strings.TrimSpace(f[1]), gatewayPrefix) {
			fields[i][1] = "(from the database) " + f[1]
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	return encodeNotice('N', fields), true
}

// auditLost ends the session because its audit trail cannot take its events: the client
// gets a FATAL error instead of the completion it was about to get.
func (c *conn) auditLost(err error) {
	c.srv.log.Error("audit trail unavailable; ending the session", "session", c.sess.ID, "err", err)
	c.setReason("internal_error")
	c.wmu.Lock()
	c.cw.Reset(c.client) // what is buffered must not reach the client without its audit
	c.completion = false
	c.wmu.Unlock()
	c.writeClient(encode(pgError("FATAL", "58000", "terminating connection: audit trail unavailable: "+err.Error(), "")), true)
	c.closeBoth()
}

// forward relays message m to the client, pops the entries it completes, and flushes
// once no further backend message is buffered. It reports false when the client is gone.
func (c *conn) forward(m *answer, r *msgReader) bool {
	var werr error
	// The proxy's own messages' answers are not relayed; a ReadyForQuery is, unless it
	// ends the proxy's own query.
	if m.head == nil || !m.head.swallow || (m.typ == 'Z' && m.head.kind != 'R') {
		c.wmu.Lock()
		if c.cw.Available() < len(m.raw) {
			// The buffer goes out to make room: a completion in it must be durable first.
			if err := c.durableLocked(); err != nil {
				c.wmu.Unlock()
				c.auditLost(err)
				return false
			}
		}
		c.bytesOut.Add(uint64(len(m.raw)))
		_, werr = c.cw.Write(m.raw)
		if m.typ == 'Z' {
			c.completion = true
		}
		c.wmu.Unlock()
	}
	if werr != nil {
		c.setReason("client_closed")
		c.closeBoth()
		return false
	}
	if m.popped || m.typ == 'Z' {
		c.advance(m.typ == 'Z', m.skipped) // records the statements' completions
	}
	if !r.buffered() {
		c.wmu.Lock()
		if err := c.durableLocked(); err != nil {
			c.wmu.Unlock()
			c.auditLost(err)
			return false
		}
		werr = c.cw.Flush()
		c.wmu.Unlock()
		if werr != nil {
			c.setReason("client_closed")
			c.closeBoth()
			return false
		}
		if m.typ == 'Z' {
			// The answer is with the client: encode its events now, while the
			// client reads it and sends the next statement.
			c.sess.EncodePending()
		}
	}
	return true
}
