package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// conn is one live session: the client, the backend, and the relay between them. Two
// goroutines run it: the client loop (client.go) reads the client, decides statements and
// writes the backend; the backend loop (backend.go) reads the backend and writes the
// client. What they share is in the groups below, each with its lock or atomics; what one
// loop alone touches needs neither. The messages of each sub-protocol are handled in their
// own file: simple.go, extended.go, copy.go, funccall.go.
type conn struct {
	srv       *Server
	st        *startState
	sess      *session.Session
	cat       *resourceCatalog // the resource's catalog (catalog.go)
	client    net.Conn
	backend   net.Conn
	cr        *msgReader // the client's, for the disconnect watch while a statement is held
	cancelKey *cancelKey

	cw  *bufio.Writer // to the client; guarded by wmu
	wmu sync.Mutex
	// completion: cw holds a ReadyForQuery whose statements' events are not yet durable
	// (durableLocked); guarded by wmu.
	completion bool
	bw         *bufio.Writer // to the backend; client loop only
	bytesIn    atomic.Uint64 // read from the client (client loop)
	bytesOut   atomic.Uint64 // written to the client (whoever holds wmu)

	life       lifecycle     // how the session ends (below)
	unregister func()        // removes the session from the registry of live sessions
	queue      answerQueue   // the answers the client waits for, in order (relay.go)
	tx         txState       // the backend's transaction status, barriers and schema changes (backend.go)
	pipe       pipeline      // the extended-protocol pipeline up to its Sync (extended.go)
	prep       prepared      // prepared statements and portals (extended.go)
	described  describeCache // the columns Describe reported of prepared statements (extended.go)
	names      nameState     // the namespace as SQL changes it (names.go)
}

// lifecycle is how the session ends, once: whichever goroutine gets there first (either
// loop, a revocation, the token's expiry, the server's shutdown, the reaper) sets the
// reason and closes; the rest find it done. The Onces and atomics need no other lock.
type lifecycle struct {
	closeOnce  sync.Once
	endReason  atomic.Value  // string
	finishOnce sync.Once     // session.end is recorded once (run, or reap after a stuck loop)
	leaveOnce  sync.Once     // the server forgets the session once
	ended      chan struct{} // closed when run has ended the session
}

// run serves one session, from the client's greeting to the record of its end.
func (s *Server) run(ctx context.Context, st *startState) {
	sess := session.New(st.identity, st.resource, s.pub, s.decider, s.cfg.Limits)
	start := &schemas.SessionStart{Protocol: "postgres", ClientAddr: st.conn.RemoteAddr().String(),
		ClientUser: st.params["user"], Database: st.params["database"], ApplicationName: st.params["application_name"],
		TLS: st.tls, BackendPID: st.backend.PID, Labels: labelList(st.resource.Labels)}
	if a := st.agent; a != nil {
		sess.Agent = &a.Agent
		start.AgentTool, start.AgentClientName, start.AgentClientVersion = a.Agent.Tool, a.Agent.ClientName, a.Agent.ClientVersion
		start.McpSession, start.McpCall = a.MCPSession, a.Call
	}
	c := &conn{srv: s, st: st, sess: sess, client: st.conn, backend: st.backend.Conn,
		cw: bufio.NewWriterSize(st.conn, 16<<10), bw: bufio.NewWriterSize(st.backend.Conn, 8<<10),
		prep: prepared{stmts: map[string]*session.Query{}, portals: map[string]*portal{}, used: map[*session.Query]bool{}},
		life: lifecycle{ended: make(chan struct{})}}
	c.queue.cond = sync.NewCond(&c.queue.mu)
	c.tx.status.Store(uint32(st.backend.TxStatus))
	sess.Resolve = c.resolve
	c.cat = c.srv.cats.of(st.resource)
	sess.CatalogVersion = c.cat.version
	sess.SchemaChanged = c.tx.ddlDone.Load
	log := s.log.With("session", sess.ID, "sub", st.identity.Subject, "resource", st.resource.Name)

	if err := sess.Start(ctx, start); err != nil {
		_, _ = st.conn.Write(encode(pgError("FATAL", "58000", "session refused: audit trail unavailable: "+err.Error(), "")))
		st.backend.Conn.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.life.endReason.Store("shutdown")
		c.finish(ctx, nil)
		return
	}
	key := s.cancels.add(st.backend.PID, st.secret, st.resource.Postgres.Address, st.backend.SecretKey)
	c.cancelKey = key
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.active.Inc()
	// From here a revocation (one that came in while the session was being set up too), the
	// token's expiry or the resource's maximum lifetime ends it, by endOnWire.
	c.unregister = s.live.Register(sess, c.endOnWire)

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
	go func() { backendDone <- c.contained("backend loop", c.backendLoop) }()
	clientErr := c.contained("client loop", func() error { return c.clientLoop(ctx) })
	c.closeBoth()
	backendErr := <-backendDone

	c.leave()
	cause := clientErr
	if cause == nil {
		cause = backendErr
	}
	c.finish(ctx, cause)
	close(c.life.ended)
	log.Info("session ended", "reason", c.life.endReason.Load())
}

// leave removes the session from the server's books: cancel keys, live sessions, the gauge.
func (c *conn) leave() {
	c.life.leaveOnce.Do(func() {
		s := c.srv
		s.cancels.remove(c.cancelKey)
		if c.unregister != nil {
			c.unregister()
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.active.Dec()
	})
}

// stuckLoopWait is how long a session whose loop ended on an internal error waits for its
// other loop before it is ended without it.
var stuckLoopWait = 10 * time.Second

// reap runs after an internal error in one of the session's loops. The panic may have left a
// lock of the session held, and the other loop waiting on it for ever: then the session
// would never be recorded as ended. After stuckLoopWait the session is ended without that
// loop (whose goroutine is lost, and logged as such), so the trail says what happened.
func (c *conn) reap() {
	select {
	case <-c.life.ended:
		return
	case <-time.After(stuckLoopWait):
	}
	c.srv.log.Error("a session loop is still blocked after an internal error; ending the session without it (its goroutine is lost)", "session", c.sess.ID)
	c.leave()
	c.finish(context.Background(), errors.New("internal error: a session loop stayed blocked after it"))
}

// contained runs one of the session's loops and turns a panic in it into an error that
// ends this session alone, logged with its stack: a bug one session runs into must not
// take the gateway, and every other session, down with it.
func (c *conn) contained(name string, loop func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("internal error; ending the session", "session", c.sess.ID, "in", name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.setReason("internal_error")
			// Tell the client why, unless the panic left the writer's lock held (then a
			// message could land inside a half-written one); then only the sockets.
			if c.wmu.TryLock() {
				_, _ = c.cw.Write(encode(pgError("FATAL", "XX000", "Gatehouse internal error; this session was ended (session "+c.sess.ID+" in the gateway's log)", "")))
				_ = c.cw.Flush()
				c.wmu.Unlock()
			}
			c.client.Close()
			c.backend.Close()
			err = fmt.Errorf("internal error in the %s: %v", name, r)
			go c.reap()
		}
	}()
	return loop()
}

func (c *conn) finish(ctx context.Context, cause error) {
	c.life.finishOnce.Do(func() { c.recordEnd(ctx, cause) })
}

func (c *conn) recordEnd(ctx context.Context, cause error) {
	reason, _ := c.life.endReason.Load().(string)
	if reason == "" {
		reason = "client_closed"
	}
	if errors.Is(cause, io.EOF) || errors.Is(cause, net.ErrClosed) || reason == "shutdown" {
		cause = nil
	}
	// Statements still running as the session ends (revoked, expired, the client gone)
	// get their completion, interrupted: the trail says how each one ended. Not when a
	// stuck loop holds the queue (the reaper's case): then the end goes without them.
	var running []*session.Result
	if c.queue.mu.TryLock() {
		for _, e := range c.queue.pending {
			if e.res != nil {
				running = append(running, e.res)
			}
		}
		c.queue.mu.Unlock()
	}
	for _, r := range running {
		r.Done("interrupted")
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.sess.End(ectx, reason, cause, c.bytesIn.Load(), c.bytesOut.Load()); err != nil {
		c.srv.log.Warn("session.end not recorded", "session", c.sess.ID, "err", err)
	}
}

func (c *conn) setReason(r string) { c.life.endReason.CompareAndSwap(nil, r) }

func (c *conn) closeBoth() {
	c.life.closeOnce.Do(func() {
		c.client.Close()
		c.backend.Close()
		c.queue.mu.Lock()
		c.queue.closed = true
		c.queue.cond.Broadcast()
		c.queue.mu.Unlock()
	})
}

// labelList is a resource's labels as sorted key=value strings.
func labelList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// terminate ends the session from the gateway's side (revoked, token expired): the client
// gets 57P01 with msg, a statement in flight is cancelled on the backend, and the cause is
// recorded before session.end.
func (c *conn) terminate(ev *schemas.SessionTerminated, msg string) {
	if c.endClient(ev, msg, true) {
		c.finishTerminate(ev)
	}
}

// endOnWire is the session's Terminate (proxy/session ends it: revoked, token expired,
// maximum lifetime): the client gets 57P01 with msg now if its writer is free; the rest
// (waiting for a busy writer, cancelling a statement in flight on the backend, closing)
// is returned for the registry to run.
func (c *conn) endOnWire(ev *schemas.SessionTerminated, msg string) func() {
	told := c.endClient(ev, msg, false)
	return func() {
		if told || c.endClient(ev, msg, true) {
			c.finishTerminate(ev)
		}
	}
}

// endClient is what the client sees of a termination: the error, then the end of the
// stream (shutdown, which does not wait for the session's reader to let go of the socket
// as a close would). Without wait it gives up on a client whose writer is busy (false).
func (c *conn) endClient(ev *schemas.SessionTerminated, msg string, wait bool) bool {
	c.queue.mu.Lock()
	ev.InFlight = len(c.queue.pending) > 0
	closed := c.queue.closed
	c.queue.mu.Unlock()
	if closed {
		return false
	}
	if wait {
		c.wmu.Lock()
	} else if !c.wmu.TryLock() {
		return false
	}
	c.setReason(ev.Cause)
	// Recorded before the client can go: its going ends the session (session.end, seal).
	c.sess.Record(ev)
	// A client that does not read gets no more than a moment.
	_ = c.client.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	b := encode(pgError("FATAL", "57P01", msg, ""))
	if c.durableLocked() != nil {
		c.cw.Reset(c.client) // completions the trail cannot take do not go out
		c.completion = false
	}
	c.bytesOut.Add(uint64(len(b)))
	_, _ = c.cw.Write(b)
	_ = c.cw.Flush()
	c.wmu.Unlock()
	closeWrite(c.client)
	return true
}

// finishTerminate cancels what runs on the backend, records the cause and closes.
func (c *conn) finishTerminate(ev *schemas.SessionTerminated) {
	if ev.InFlight && c.cancelKey != nil {
		c.srv.cancelBackend(c.cancelKey)
	}
	c.closeBoth()
}

// closeWrite ends the stream to the peer at once.
func closeWrite(conn net.Conn) {
	if p, ok := conn.(*prefixConn); ok {
		conn = p.Conn
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
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
	if (flush || c.cw.Available() < len(b)) && c.durableLocked() != nil {
		// The audit trail cannot take the completions buffered: they do not go out.
		c.cw.Reset(c.client)
		c.completion = false
	}
	c.bytesOut.Add(uint64(len(b)))
	_, _ = c.cw.Write(b)
	if flush {
		_ = c.cw.Flush()
	}
}
