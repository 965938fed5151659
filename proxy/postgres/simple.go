package postgres

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
)

// The simple query protocol: a Query is decided, and forwarded or answered by the proxy;
// the backend answers it (results, then ReadyForQuery) on the backend loop (backend.go).
// Client loop only.

// onQuery decides a simple query (which may hold several statements) and forwards it, or
// answers it with the refusal.
func (c *conn) onQuery(ctx context.Context, raw, body []byte) ([]byte, error) {
	sql, _, err := cstring(body)
	if err != nil {
		return nil, fmt.Errorf("Query: %w", err)
	}
	if !utf8.ValidString(sql) {
		q := c.sess.Refused(sql, "simple", "", invalidUTF8)
		c.sess.NewResult(q).Done("denied")
		c.respond(append(encode(pgError("ERROR", "22021", invalidUTF8, "")), c.readyForQuery()...))
		return nil, nil
	}
	q := c.sess.OnQuery(ctx, sql, "simple", "")
	if why := c.refusalOf(ctx, q, sql); why != nil {
		return c.refuseQuery(q, why)
	}
	rm, err := c.newResultMask(q)
	if err != nil {
		// Refused as a policy refusal is: in a transaction, the transaction fails.
		return c.refuseQuery(q, &refusal{code: "42501", msg: "Gatehouse cannot apply the masking policy: " + err.Error()})
	}
	// A statement that runs unseen code, or changes the schema, is a barrier: the next
	// is decided once it is done (and the session's schema change is known).
	en := &entry{kind: 'Q', res: c.sess.NewResult(q), mask: rm, ddl: q.Decision.DDL, barrier: q.Decision.Code || q.Decision.DDL}
	if len(c.names.lastOps) > 0 {
		en.ops, en.opsQ = c.names.lastOps, q
		c.names.opsInFlight.Add(1)
	}
	if en.barrier {
		c.tx.codeInFlight.Add(1)
	}
	return raw, c.push(en)
}

// refuseQuery answers a refused simple query in its place; the statement never reaches
// the backend.
func (c *conn) refuseQuery(q *session.Query, why *refusal) ([]byte, error) {
	c.sess.NewResult(q).Done("denied")
	if c.tx.status.Load() != 'T' {
		c.respond(append(why.response(), c.readyForQuery()...))
		return nil, nil
	}
	// In a transaction: the backend raises the same error, so its transaction fails
	// as PostgreSQL's own would; the refused statement does not reach it.
	return encode(&pgproto3.Query{String: abortSQL(why.code, why.msg)}), c.push(&entry{kind: 'Q'})
}
