package postgres

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// The function call sub-protocol: the fast-path call (libpq's PQfn, large objects) names
// its function by OID: the proxy asks the backend for the name and decides on
// "SELECT name()". onFunctionCall runs on the client loop, onFunctionCallResponse on the
// backend loop.

// onFunctionCall decides a FunctionCall and forwards it, or answers it with the refusal.
func (c *conn) onFunctionCall(ctx context.Context, raw, body []byte) ([]byte, error) {
	var fc pgproto3.FunctionCall
	if err := fc.Decode(body); err != nil {
		return nil, fmt.Errorf("FunctionCall: %w", err)
	}
	if c.pipe.sentSinceSync {
		// Inside an extended-protocol pipeline the backend may be discarding everything
		// up to the Sync after an error: this call, and the proxy's lookup with it. The
		// client's Sync comes after the call, so waiting for the lookup's answer would
		// wait for nothing. Settle the pipeline first; if it failed, discard the call
		// as the backend does.
		skipped, err := c.settleExtended()
		if err != nil {
			return nil, err
		}
		if skipped {
			return nil, nil
		}
	}
	call := append([]byte(nil), raw...) // raw is reused by the lookup below
	name, err := c.lookup(fmt.Sprintf("SELECT %d::regproc::text", fc.Function))
	if err != nil {
		c.respond(append(encode(pgError("ERROR", "42883", fmt.Sprintf("cannot resolve function OID %d: %v", fc.Function, err), "")), c.readyForQuery()...))
		return nil, nil
	}
	q := c.sess.OnQuery(ctx, "SELECT "+name+"()", "function_call", "")
	if refused := c.functionCallRefusal(q, name); refused != nil {
		c.sess.NewResult(q).Done("denied")
		c.respond(append(refused, c.readyForQuery()...))
		return nil, nil
	}
	en := &entry{kind: 'F', res: c.sess.NewResult(q), barrier: q.Decision.Code}
	if en.barrier {
		c.tx.codeInFlight.Add(1)
	}
	return call, c.push(en)
}

// functionCallRefusal is the error a call of function name decided as q gets, nil when it
// may run.
func (c *conn) functionCallRefusal(q *session.Query, name string) []byte {
	if !q.Decision.Allowed() {
		return c.denyResponse(q)
	}
	if q.Decision.Effect == schemas.EffectMask {
		// A fast-path result is one value of no known column, often binary (large
		// objects): it cannot be masked, so it is not handed out where masking applies.
		return encode(pgError("ERROR", "42501", fmt.Sprintf("Gatehouse: %s is masked for this caller, and a fast-path function call's result cannot be masked; call it with SELECT", name),
			""))
	}
	return nil
}

// onFunctionCallResponse records the call's result: an int32 length (-1 NULL), then the
// value.
func (c *conn) onFunctionCallResponse(m *answer) {
	if m.head != nil && m.head.kind == 'F' && len(m.body) >= 4 {
		var v []byte
		if n := int32(binary.BigEndian.Uint32(m.body)); n >= 0 && int(n) <= len(m.body)-4 {
			v = m.body[4 : 4+n]
		}
		m.head.res.Row([][]byte{v})
	}
}
