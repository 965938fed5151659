package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// maxBackendMessage is PostgreSQL's own limit on a message (1 GB).
const maxBackendMessage = 1 << 30

// maxPreparedStatements bounds the statement and portal names tracked per session.
const maxPreparedStatements = 10000

// entry is one thing the client waits for, in order: the results of a simple query or of an
// Execute, the ReadyForQuery of a Sync, or an error the proxy itself answers with.
type entry struct {
	kind    byte // 'Q' simple query, 'E' execute, 'S' sync, 'X' injected response
	res     *session.Result
	errSeen bool
	inject  []byte
}

// conn is one live session: the client, the backend, and the relay between them.
type conn struct {
	srv     *Server
	st      *startState
	sess    *session.Session
	client  net.Conn
	backend net.Conn

	cw  *bufio.Writer // to the client; guarded by wmu
	wmu sync.Mutex
	bw  *bufio.Writer // to the backend; client loop only

	qmu     sync.Mutex // guards pending
	pending []*entry

	txStatus atomic.Uint32 // last ReadyForQuery status
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64

	// Client-loop state for the extended protocol.
	stmts         map[string]*session.Query // prepared statement name → its decision
	portals       map[string]*session.Query // portal name → statement
	stmtUsed      map[*session.Query]bool
	skipToSync    bool // an error was answered in this pipeline: discard until Sync
	sentSinceSync bool // a message of this pipeline reached the backend

	closeOnce sync.Once
	endReason atomic.Value // string
}

func (s *Server) run(ctx context.Context, st *startState) {
	sess := session.New(st.identity, st.resource, s.pub, s.decider, s.cfg.Limits)
	c := &conn{srv: s, st: st, sess: sess, client: st.conn, backend: st.backend.Conn,
		cw: bufio.NewWriterSize(st.conn, 32<<10), bw: bufio.NewWriterSize(st.backend.Conn, 32<<10),
		stmts: map[string]*session.Query{}, portals: map[string]*session.Query{}, stmtUsed: map[*session.Query]bool{}}
	c.txStatus.Store(uint32(st.backend.TxStatus))
	log := s.log.With("session", sess.ID, "sub", st.identity.Subject, "resource", st.resource.Name)

	if err := sess.Start(ctx, &schemas.SessionStart{Protocol: "postgres", ClientAddr: st.conn.RemoteAddr().String(),
		ClientUser: st.params["user"], Database: st.params["database"], ApplicationName: st.params["application_name"],
		TLS: st.tls, BackendPID: st.backend.PID}); err != nil {
		_, _ = st.conn.Write(encode(pgError("FATAL", "58000", "session refused: audit trail unavailable: "+err.Error(), "")))
		st.backend.Conn.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.endReason.Store("shutdown")
		c.finish(ctx, nil)
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.active.Inc()
	key := s.cancels.add(st.backend.PID, st.secret, st.resource.Postgres.Address, st.backend.SecretKey)

	// Greet the client as PostgreSQL would.
	var hello []pgproto3.Message
	hello = append(hello, &pgproto3.AuthenticationOk{})
	for k, v := range st.backend.ParameterStatuses {
		hello = append(hello, &pgproto3.ParameterStatus{Name: k, Value: v})
	}
	var sk [4]byte
	binary.BigEndian.PutUint32(sk[:], st.secret)
	hello = append(hello, &pgproto3.BackendKeyData{ProcessID: st.backend.PID, SecretKey: sk[:]},
		&pgproto3.ReadyForQuery{TxStatus: st.backend.TxStatus})
	c.writeClient(encode(hello...), true)
	log.Info("session started", "client", st.conn.RemoteAddr().String(), "backend_pid", st.backend.PID)

	backendDone := make(chan error, 1)
	go func() { backendDone <- c.backendLoop() }()
	clientErr := c.clientLoop(ctx)
	c.closeBoth()
	backendErr := <-backendDone

	s.cancels.remove(key)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Dec()
	cause := clientErr
	if cause == nil {
		cause = backendErr
	}
	c.finish(ctx, cause)
	log.Info("session ended", "reason", c.endReason.Load())
}

func (c *conn) finish(ctx context.Context, cause error) {
	reason, _ := c.endReason.Load().(string)
	if reason == "" {
		reason = "client_closed"
	}
	if errors.Is(cause, io.EOF) || errors.Is(cause, net.ErrClosed) || reason == "shutdown" {
		cause = nil
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.sess.End(ectx, reason, cause, c.bytesIn.Load(), c.bytesOut.Load()); err != nil {
		c.srv.log.Warn("session.end not recorded", "session", c.sess.ID, "err", err)
	}
}

func (c *conn) setReason(r string) { c.endReason.CompareAndSwap(nil, r) }

func (c *conn) closeBoth() {
	c.closeOnce.Do(func() {
		c.client.Close()
		c.backend.Close()
	})
}

// shutdown ends the session from the server side.
func (c *conn) shutdown() {
	c.setReason("shutdown")
	c.writeClient(encode(pgError("FATAL", "57P01", "terminating connection: Gatehouse is shutting down", "")), true)
	c.closeBoth()
}

func (c *conn) writeClient(b []byte, flush bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bytesOut.Add(uint64(len(b)))
	_, _ = c.cw.Write(b)
	if flush {
		_ = c.cw.Flush()
	}
}

// respond answers the client from the proxy, in order: at once when nothing is in flight,
// otherwise after the backend's responses to earlier messages.
func (c *conn) respond(b []byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.pending) == 0 {
		c.writeClient(b, true)
		return
	}
	c.pending = append(c.pending, &entry{kind: 'X', inject: b})
}

// maxPending bounds what a client may pipeline without reading the answers.
const maxPending = 100000

// errPipelineTooDeep ends a session that pipelines more than maxPending requests.
var errPipelineTooDeep = fmt.Errorf("more than %d pipelined requests waiting for their results; read results before sending more", maxPending)

func (c *conn) push(e *entry) error {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.pending) >= maxPending {
		return errPipelineTooDeep
	}
	c.pending = append(c.pending, e)
	return nil
}

func (c *conn) denyResponse(q *session.Query) []byte {
	d := q.Decision
	msg := "Gatehouse denied the statement: " + d.Reason
	if d.Rule != "" {
		msg = fmt.Sprintf("Gatehouse denied the statement (policy %s, rule %s): %s", d.Policy, d.Rule, d.Reason)
	}
	return encode(pgError("ERROR", "42501", msg, "every statement is checked against the gateway's policy; ask the resource owner for access"))
}

func (c *conn) readyForQuery() []byte {
	return encode(&pgproto3.ReadyForQuery{TxStatus: byte(c.txStatus.Load())})
}

// clientLoop reads client messages, decides statements and forwards the rest.
func (c *conn) clientLoop(ctx context.Context) error {
	r := &msgReader{r: bufio.NewReaderSize(c.client, 32<<10), max: c.srv.cfg.MaxMessageBytes}
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
		forward, err := c.onClientMessage(ctx, typ, body)
		if err != nil {
			c.setReason("client_error")
			code, msg := "08P01", "protocol violation: "+err.Error()
			if errors.Is(err, errPipelineTooDeep) {
				code, msg = "54000", err.Error()
			}
			c.writeClient(encode(pgError("FATAL", code, msg, "")), true)
			return err
		}
		if typ == 'X' {
			c.setReason("client_closed")
			_, _ = c.bw.Write(raw)
			_ = c.bw.Flush()
			return nil
		}
		if forward {
			if _, err := c.bw.Write(raw); err != nil {
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

// onClientMessage applies policy to one message and says whether to forward it.
func (c *conn) onClientMessage(ctx context.Context, typ byte, body []byte) (bool, error) {
	if c.skipToSync && typ != 'S' {
		return false, nil
	}
	switch typ {
	case 'Q':
		sql, _, err := cstring(body)
		if err != nil {
			return false, fmt.Errorf("Query: %w", err)
		}
		q := c.sess.OnQuery(ctx, sql, "simple", "")
		if !q.Decision.Allowed() {
			c.sess.NewResult(q).Done("denied")
			c.respond(append(c.denyResponse(q), c.readyForQuery()...))
			return false, nil
		}
		return true, c.push(&entry{kind: 'Q', res: c.sess.NewResult(q)})
	case 'P':
		var p pgproto3.Parse
		if err := p.Decode(body); err != nil {
			return false, fmt.Errorf("Parse: %w", err)
		}
		if _, exists := c.stmts[p.Name]; !exists && len(c.stmts) >= maxPreparedStatements {
			c.respond(encode(pgError("ERROR", "53400", fmt.Sprintf("too many prepared statements (limit %d); deallocate some", maxPreparedStatements), "")))
			c.skipToSync = true
			return false, nil
		}
		q := c.sess.OnQuery(ctx, p.Query, "extended", p.Name)
		if !q.Decision.Allowed() {
			c.sess.NewResult(q).Done("denied")
			c.respond(c.denyResponse(q))
			c.skipToSync = true
			return false, nil
		}
		c.stmts[p.Name] = q
		c.sentSinceSync = true
		return true, nil
	case 'B':
		var b pgproto3.Bind
		if err := b.Decode(body); err != nil {
			return false, fmt.Errorf("Bind: %w", err)
		}
		if q, ok := c.stmts[b.PreparedStatement]; ok {
			if len(c.portals) < maxPreparedStatements || c.portals[b.DestinationPortal] != nil {
				c.portals[b.DestinationPortal] = q
			}
		}
		c.sentSinceSync = true
		return true, nil
	case 'E':
		var e pgproto3.Execute
		if err := e.Decode(body); err != nil {
			return false, fmt.Errorf("Execute: %w", err)
		}
		q := c.portals[e.Portal]
		if q == nil {
			// Unknown portal: the backend will answer with its own error.
			q = c.sess.Unattributed()
		} else if c.stmtUsed[q] {
			q = c.sess.Reexecute(ctx, q)
		}
		c.stmtUsed[q] = true
		c.sentSinceSync = true
		return true, c.push(&entry{kind: 'E', res: c.sess.NewResult(q)})
	case 'C':
		var cl pgproto3.Close
		if err := cl.Decode(body); err != nil {
			return false, fmt.Errorf("Close: %w", err)
		}
		if cl.ObjectType == 'S' {
			delete(c.stmtUsed, c.stmts[cl.Name])
			delete(c.stmts, cl.Name)
		} else {
			delete(c.portals, cl.Name)
		}
		c.sentSinceSync = true
		return true, nil
	case 'S':
		skipped := c.skipToSync
		c.skipToSync = false
		if skipped && !c.sentSinceSync {
			c.respond(c.readyForQuery())
			return false, nil
		}
		c.sentSinceSync = false
		return true, c.push(&entry{kind: 'S'})
	case 'D', 'H', 'd', 'c', 'f', 'X':
		if typ == 'D' || typ == 'H' {
			c.sentSinceSync = true
		}
		return true, nil
	case 'F':
		c.respond(append(encode(pgError("ERROR", "42501", "Gatehouse denied the call: the FunctionCall protocol message is not allowed through the gateway; call the function from SQL", "")), c.readyForQuery()...))
		return false, nil
	case 'p':
		return false, errors.New("unexpected password message after authentication")
	default:
		return false, fmt.Errorf("unknown message type %q", typ)
	}
}

// backendLoop relays backend messages to the client and records results.
func (c *conn) backendLoop() error {
	r := &msgReader{r: bufio.NewReaderSize(c.backend, 32<<10), max: maxBackendMessage}
	var values [][]byte
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
		head := c.head()
		popped := false
		switch typ {
		case 'T':
			if head != nil && head.res != nil {
				var rd pgproto3.RowDescription
				if err := rd.Decode(body); err == nil {
					cols := make([]schemas.Column, len(rd.Fields))
					for i, f := range rd.Fields {
						cols[i] = schemas.Column{Name: string(f.Name), TableOID: f.TableOID, Attnum: f.TableAttributeNumber, TypeOID: f.DataTypeOID, Format: f.Format}
					}
					head.res.Columns(cols)
				}
			}
		case 'D':
			if head != nil && head.res != nil {
				if values, err = dataRowValues(body, values); err == nil {
					head.res.Row(values)
				}
			}
		case 'C', 'I', 's':
			if head != nil && head.res != nil {
				if typ == 'C' {
					tag, _, _ := cstring(body)
					head.res.Tag(tag)
				}
				if head.kind == 'E' {
					head.res.Done("ok")
					popped = true
				}
			}
		case 'E':
			var er pgproto3.ErrorResponse
			_ = er.Decode(body)
			if head != nil && head.res != nil {
				head.res.Error(er.Code, er.Message, "backend")
				head.errSeen = true
				if head.kind == 'E' {
					head.res.Done("error")
					popped = true
				}
			}
		case 'Z':
			if len(body) == 1 {
				c.txStatus.Store(uint32(body[0]))
			}
		}
		c.wmu.Lock()
		c.bytesOut.Add(uint64(len(raw)))
		_, werr := c.cw.Write(raw)
		c.wmu.Unlock()
		if werr != nil {
			c.setReason("client_closed")
			c.closeBoth()
			return nil
		}
		if popped || typ == 'Z' {
			c.advance(typ == 'Z')
		}
		if !r.buffered() {
			c.wmu.Lock()
			werr = c.cw.Flush()
			c.wmu.Unlock()
			if werr != nil {
				c.setReason("client_closed")
				c.closeBoth()
				return nil
			}
		}
	}
}

func (c *conn) head() *entry {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for _, e := range c.pending {
		if e.kind != 'X' {
			return e
		}
	}
	return nil
}

// advance pops the finished head entry. On ReadyForQuery it pops up to and including the
// simple query or Sync it answers, closing Executes the backend skipped after an error.
// Injected responses that become due are written in order.
func (c *conn) advance(ready bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if ready {
		for len(c.pending) > 0 {
			e := c.pending[0]
			c.pending = c.pending[1:]
			if e.kind == 'X' {
				c.writeClient(e.inject, false)
				continue
			}
			if e.kind == 'E' {
				e.res.Done("skipped")
				continue
			}
			if e.kind == 'Q' {
				status := "ok"
				if e.errSeen {
					status = "error"
				}
				e.res.Done(status)
			}
			break
		}
	} else {
		for i, e := range c.pending {
			if e.kind != 'X' {
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				break
			}
		}
	}
	for len(c.pending) > 0 && c.pending[0].kind == 'X' {
		c.writeClient(c.pending[0].inject, false)
		c.pending = c.pending[1:]
	}
}
