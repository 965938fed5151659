package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// The client side of a session: the client loop reads the client's messages, decides
// statements and writes what goes on to the backend. Everything here runs on the client
// loop; each message kind has its own step, in the file of its sub-protocol.

// testHook, when set (tests only), sees every client message before the proxy does.
var testHook func(typ byte, body []byte)

// testHookLocked, when set (tests only), sees every client message with the session's
// queue lock held (a panic in it leaves the lock held), and how to release it.
var testHookLocked func(typ byte, body []byte, unlock func())

// clientLoop reads client messages, decides statements and forwards the rest.
func (c *conn) clientLoop(ctx context.Context) error {
	r := &msgReader{r: bufio.NewReaderSize(c.client, 8<<10), max: c.srv.cfg.MaxMessageBytes}
	c.cr = r
	for {
		typ, raw, body, err := r.next()
		if err != nil {
			if errors.Is(err, errTooLarge) {
				c.setReason("client_error")
				c.writeClient(encode(pgError("FATAL", "08P01", "message exceeds the gateway's limit: "+err.Error(), "")), true)
				return err
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				c.setReason("client_closed")
				return nil
			}
			c.setReason("client_error")
			return err
		}
		c.bytesIn.Add(uint64(len(raw)))
		if testHook != nil {
			testHook(typ, body)
		}
		if testHookLocked != nil {
			c.queue.mu.Lock()
			testHookLocked(typ, body, c.queue.mu.Unlock)
			c.queue.mu.Unlock()
		}
		out, err := c.onClientMessage(ctx, typ, raw, body)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			c.setReason("client_error")
			c.writeClient(encode(pgError("FATAL", "08P01", "protocol violation: "+err.Error(), "")), true)
			return err
		}
		if typ == 'X' {
			c.setReason("client_closed")
			_, _ = c.bw.Write(raw)
			_ = c.bw.Flush()
			return nil
		}
		if out != nil {
			if _, err := c.bw.Write(out); err != nil {
				c.setReason("backend_closed")
				return err
			}
		}
		if !r.buffered() {
			if err := c.bw.Flush(); err != nil {
				c.setReason("backend_closed")
				return err
			}
		}
	}
}

// onClientMessage applies policy to one message and returns what to send the backend: the
// message as received, something in its place, or nil for nothing.
func (c *conn) onClientMessage(ctx context.Context, typ byte, raw, body []byte) ([]byte, error) {
	if c.pipe.skipToSync && typ != 'S' {
		return nil, nil
	}
	if c.names.opsInFlight.Load() > 0 || c.names.changed.Load() {
		switch typ {
		case 'Q', 'P', 'B', 'E', 'D', 'C':
			if err := c.syncNames(); err != nil {
				return nil, err
			}
		}
	}
	switch typ {
	case 'Q', 'P', 'F':
		if ok, err := c.beforeStatement(ctx, typ); !ok {
			return nil, err
		}
	}
	c.names.lastOps, c.names.lastUses = nil, false
	switch typ {
	case 'Q':
		return c.onQuery(ctx, raw, body)
	case 'P':
		return c.onParse(ctx, raw, body)
	case 'B':
		return c.onBind(raw, body)
	case 'E':
		return c.onExecute(ctx, raw, body)
	case 'C':
		return c.onClose(raw, body)
	case 'D':
		return c.onDescribe(raw, body)
	case 'S':
		return c.onSync(raw)
	case 'H':
		return c.onFlush(raw)
	case 'd', 'c', 'f':
		return c.onCopyIn(raw), nil
	case 'X':
		return raw, nil
	case 'F':
		return c.onFunctionCall(ctx, raw, body)
	case 'p':
		return nil, errors.New("unexpected password message after authentication")
	default:
		return nil, fmt.Errorf("unknown message type %q", typ)
	}
}

// beforeStatement comes before a new statement (Query, Parse, FunctionCall) is decided: it
// waits for a statement in flight that runs unseen code, and reads the catalog again after
// a schema change. It reports false when the statement is not to be decided: answered
// already, or err.
func (c *conn) beforeStatement(ctx context.Context, typ byte) (bool, error) {
	if c.pipe.codeBeforeSync {
		// Still before the Sync of a statement that runs unseen code: the backend
		// reports a changed setting only at the Sync, and would read this one with it.
		c.respond(encode(pgError("ERROR", "0A000", "Gatehouse: the statement before this one changes the schema or runs code the gateway cannot see into (a DO block, or a function that is not built in), which may change what later statements mean; send a Sync before the next statement", "")))
		if typ != 'P' {
			c.respond(c.readyForQuery())
			return false, nil
		}
		c.pipe.skipToSync = true
		c.pipe.abortAtSync = true
		return false, nil
	}
	if err := c.waitCode(); err != nil {
		return false, err
	}
	if c.cat.stale.Load() {
		if _, err := c.srv.cats.ensure(ctx, c.st.resource); err != nil {
			c.srv.log.Warn("catalog refresh after a schema change failed; the previous catalog stays in use", "resource", c.st.resource.Name, "err", err)
		}
	}
	return true, nil
}

// refusalOf settles q's decision: why the statement (whose text is sql) may not run, or nil
// when it may. A require_approval decision is settled now (approval.go).
func (c *conn) refusalOf(ctx context.Context, q *session.Query, sql string) *refusal {
	if q.Decision.Effect == schemas.EffectRequireApproval {
		return c.approveNow(ctx, q, q.ApprovalText(sql))
	}
	if !q.Decision.Allowed() {
		return denial(q)
	}
	return nil
}

// denial is the error a refused statement gets.
func denial(q *session.Query) *refusal {
	d := q.Decision
	if d.SQLState != "" {
		// Refused as PostgreSQL would refuse it (a syntax error, with the parser's message
		// and position).
		r := &refusal{code: d.SQLState, msg: d.Reason}
		if d.Position > 0 && d.Position < 1<<31 {
			r.position = int32(d.Position)
		}
		return r
	}
	if d.Effect == "require_approval" {
		return &refusal{code: "42501", msg: fmt.Sprintf("Gatehouse: approval required (policy %s, rule %s): %s", d.Policy, d.Rule, d.Reason),
			hint: "this needs a human approval, which the gateway holds only for a SQL statement sent on its own (not a fast-path function call), and only when approvals are configured; it is refused"}
	}
	msg := "Gatehouse denied the statement: " + d.Reason
	if d.Rule != "" {
		msg = fmt.Sprintf("Gatehouse denied the statement (policy %s, rule %s): %s", d.Policy, d.Rule, d.Reason)
	}
	return &refusal{code: "42501", msg: msg, hint: "every statement is checked against the gateway's policy; ask the resource owner for access"}
}

// approveNow settles a require_approval decision before the statement goes on. Statements
// are held only when nothing is in flight: a held statement inside a pipeline would hold
// the answers of what precedes it.
func (c *conn) approveNow(ctx context.Context, q *session.Query, sql string) *refusal {
	c.queue.mu.Lock()
	busy := len(c.queue.pending) > 0
	c.queue.mu.Unlock()
	if busy && q.Decision.Approval != nil && q.Decision.Approval.Mode != "fail_fast" {
		return &refusal{code: "42501", msg: fmt.Sprintf("Gatehouse: approval required (policy %s, rule %s): %s; a statement is held for approval only outside a pipeline, send it on its own", q.Decision.Policy, q.Decision.Rule, q.Decision.Reason)}
	}
	return c.approve(ctx, q, sql)
}

// denyResponse is the ErrorResponse a refused statement gets.
func (c *conn) denyResponse(q *session.Query) []byte { return denial(q).response() }

// readyForQuery is the proxy's own ReadyForQuery, with the backend's last transaction
// status.
func (c *conn) readyForQuery() []byte {
	return encode(&pgproto3.ReadyForQuery{TxStatus: byte(c.tx.status.Load())})
}

// abortSQL makes the backend raise an error: sent in place of a refused statement inside a
// transaction, so that the backend's transaction fails exactly as it would had PostgreSQL
// refused the statement itself. The refused statement never reaches the backend.
func abortSQL(code, msg string) string {
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "$gatehouse$", ""), "'", "''")
	return "DO $gatehouse$ BEGIN RAISE EXCEPTION USING ERRCODE = '" + code + "', MESSAGE = '" + msg + "'; END $gatehouse$"
}

// resolve is the session's Resolve: what a statement that creates, drops or runs names
// does. It notes the names the statement creates or drops (lastOps) and returns the
// statements it runs by name.
func (c *conn) resolve(d *schemas.DecisionReply, sql string) []session.Ref {
	if !namesStatement(d.Kinds) {
		return nil
	}
	ops, uses, err := c.namesOf(sql)
	c.names.lastUses = len(uses) > 0
	if err != nil {
		return nil // the policy service parsed it; a statement that does not parse is refused there
	}
	c.names.lastOps = ops
	return c.referenced(uses)
}
