package postgres

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
)

// entry is one answer the client waits for, in the order it will get them: for every
// forwarded message that the backend answers (Query, Parse, Bind, Describe, Close, Execute,
// Sync), and for every answer the proxy gives itself. Tracking all of them keeps the
// proxy's own answers (a denied statement) in their place within a pipeline.
type entry struct {
	kind    byte              // the client message: 'Q', 'P', 'B', 'D', 'C', 'E', 'S'; 'X' an injected answer
	portal  bool              // a Describe of a portal (its RowDescription describes the next Execute)
	swallow bool              // the proxy's own message: its answers are not relayed to the client
	lookup  chan lookupResult // 'R': the proxy's own query, answered to the client loop
	found   bool              // 'R': answered already (backend loop only)
	res     *session.Result
	mask    *resultMask    // the statement's results are masked
	q       *session.Query // 'D' of a statement: whose columns its RowDescription gives
	errSeen bool
	inject  []byte
	ops     []nameOp       // names the statement creates or drops, in order (see names.go)
	opsQ    *session.Query // the statement that does them
	ddl     bool           // the statement changes the schema: the catalog is read again once committed
	barrier bool           // a statement that runs unseen code: nothing follows it until this is answered
}

// lookupResult is the answer to one of the proxy's own queries: the first column of its
// first row, or the error.
type lookupResult struct {
	value string
	err   error
}

// answerQueue is what the client waits for, in order (entry): the client loop pushes an
// entry for every message it forwards or answers itself, the backend loop pops them as the
// backend answers. mu guards pending and closed; cond is signalled when entries are
// answered or the connection closes, and the client loop waits on it (backpressure,
// barriers, names in flight, a settled pipeline).
type answerQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []*entry
	closed  bool
	// The backend skips to the next Sync after an error: set by the backend loop (under mu,
	// with a broadcast) at the ErrorResponse, cleared at ReadyForQuery; the client loop
	// reads it under mu.
	skipping atomic.Bool
}

// respond answers the client from the proxy, in order: at once when nothing is in flight,
// otherwise after the backend's responses to earlier messages.
func (c *conn) respond(b []byte) {
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	if len(c.queue.pending) == 0 {
		c.writeClient(b, true)
		return
	}
	c.queue.pending = append(c.queue.pending, &entry{kind: 'X', inject: b})
}

// A client may pipeline requests without reading answers; past pipelineHighWater requests
// in flight the proxy stops reading from it until the backend's answers bring the count
// below pipelineLowWater, as PostgreSQL itself stops reading when its output is not read.
const (
	pipelineHighWater = 20000
	pipelineLowWater  = 10000
)

// waitRoom applies that backpressure. It flushes what is buffered for the backend first,
// so that the backend can answer what is in flight.
func (c *conn) waitRoom() error {
	c.queue.mu.Lock()
	full := len(c.queue.pending) >= pipelineHighWater
	c.queue.mu.Unlock()
	if !full {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	for len(c.queue.pending) >= pipelineLowWater && !c.queue.closed {
		c.queue.cond.Wait()
	}
	if c.queue.closed {
		return net.ErrClosed
	}
	return nil
}

// push queues entries for answers to come, once there is room for them.
func (c *conn) push(entries ...*entry) error {
	if err := c.waitRoom(); err != nil {
		return err
	}
	c.queue.mu.Lock()
	c.queue.pending = append(c.queue.pending, entries...)
	c.queue.mu.Unlock()
	return nil
}

// head is the oldest entry that waits for the backend's answer (an injected answer does
// not).
func (c *conn) head() *entry {
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	for _, e := range c.queue.pending {
		if e.kind != 'X' {
			return e
		}
	}
	return nil
}

// lookup runs one of the proxy's own queries on the session's backend, in order with what
// is in flight, and returns the first column of its first row. Its answers are not relayed.
func (c *conn) lookup(sql string) (string, error) {
	answer := make(chan lookupResult, 1)
	e := &entry{kind: 'R', swallow: true, lookup: answer}
	if err := c.push(e); err != nil {
		return "", err
	}
	if _, err := c.bw.Write(encode(&pgproto3.Query{String: sql})); err != nil {
		return "", err
	}
	if err := c.bw.Flush(); err != nil {
		return "", err
	}
	select {
	case r := <-answer:
		return r.value, r.err
	case <-time.After(c.srv.cfg.StartupTimeout):
		return "", errors.New("the backend did not answer")
	}
}

// advance pops the answered head entry. On ReadyForQuery it pops up to and including the
// simple query or Sync it answers, closing what the backend skipped after an error.
// Injected answers that become due are written in order.
func (c *conn) advance(ready, skipped bool) {
	c.queue.mu.Lock()
	defer c.queue.mu.Unlock()
	if ready {
		for len(c.queue.pending) > 0 {
			e := c.queue.pending[0]
			c.queue.pending = c.queue.pending[1:]
			c.release(e)
			switch e.kind {
			case 'X':
				c.writeClient(e.inject, false)
				continue
			case 'E':
				if e.res != nil {
					e.res.Done("skipped")
				}
				continue
			case 'P', 'B', 'C', 'D':
				continue
			case 'Q', 'F', 'R':
				if skipped {
					// After an error in the extended protocol the backend discards every
					// message up to the Sync, a simple query too: this ReadyForQuery
					// answers the Sync, not this query.
					if e.res != nil {
						e.res.Done("skipped")
					}
					if e.kind == 'R' && !e.found {
						e.lookup <- lookupResult{err: errors.New("the backend skipped the query after an error in the pipeline")}
					}
					continue
				}
			}
			switch e.kind {
			case 'Q', 'F':
				if e.res != nil {
					status := "ok"
					if e.errSeen {
						status = "error"
					}
					e.res.Done(status)
				}
			case 'R':
				if !e.found {
					e.lookup <- lookupResult{err: errors.New("no rows")}
				}
			}
			break
		}
	} else {
		for i, e := range c.queue.pending {
			if e.kind != 'X' {
				c.release(e)
				c.queue.pending = append(c.queue.pending[:i], c.queue.pending[i+1:]...)
				break
			}
		}
	}
	for len(c.queue.pending) > 0 && c.queue.pending[0].kind == 'X' {
		c.writeClient(c.queue.pending[0].inject, false)
		c.queue.pending = c.queue.pending[1:]
	}
	if len(c.queue.pending) < pipelineLowWater {
		c.queue.cond.Broadcast()
	}
}

// release notes that entry e has been answered (queue.mu held): a statement that changes names
// is done, and the client loop may go on with the names it uses.
func (c *conn) release(e *entry) {
	if e.opsQ != nil {
		e.opsQ = nil
		c.names.opsInFlight.Add(-1)
		c.queue.cond.Broadcast()
	}
	if e.barrier {
		e.barrier = false
		c.tx.codeInFlight.Add(-1)
		c.queue.cond.Broadcast()
	}
}
