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
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/policy"
	"github.com/gatehouse/gatehouse/services/revoke"
)

// maxBackendMessage is PostgreSQL's own limit on a message (1 GB).
const maxBackendMessage = 1 << 30

// maxPreparedStatements bounds the statement and portal names tracked per session.
const maxPreparedStatements = 10000

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

	qmu     sync.Mutex // guards pending and closed
	qcond   *sync.Cond // signalled when entries are answered or the connection closes
	pending []*entry
	closed  bool

	txStatus atomic.Uint32 // last ReadyForQuery status
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64

	// Client-loop state for the extended protocol.
	stmts         map[string]*session.Query // prepared statement name → its decision
	portals       map[string]*portal        // portal name → statement and parameters
	stmtUsed      map[*session.Query]bool
	skipToSync    bool // an error was answered in this pipeline: discard until Sync
	abortAtSync   bool // make the backend fail this pipeline's transaction before the Sync
	sentSinceSync bool // a message of this pipeline reached the backend

	closeOnce  sync.Once
	endReason  atomic.Value  // string
	finishOnce sync.Once     // session.end is recorded once (run, or reap after a stuck loop)
	leaveOnce  sync.Once     // the server forgets the session once
	ended      chan struct{} // closed when run has ended the session

	cr        *msgReader // the client's, for the disconnect watch while a statement is held
	cancelKey *cancelKey

	descMu    sync.Mutex
	described map[*session.Query][]schemas.Column // a prepared statement's columns, from its Describe

	// The namespace of prepared statements and cursors as SQL changes it (names.go).
	cursors         map[string]*session.Query // cursor name → the DECLARE that made it; client loop only
	namesSeen       map[string]namesResult    // namesOf's memory; client loop only
	approved        map[*session.Query]bool   // statements approved at their Parse; client loop only
	stmtNames       map[*session.Query][]nameOp
	lastOps         []nameOp // what the statement just decided does to names; client loop only
	lastUses        bool     // the statement just decided runs names (EXECUTE, FETCH); client loop only
	stmtUses        map[*session.Query]bool
	skipping        atomic.Bool // the backend skips to the next Sync after an error
	nameOpsInFlight atomic.Int32
	namesChanged    atomic.Bool
	nameMu          sync.Mutex
	nameChanges     []nameChange

	cat *resourceCatalog // the resource's catalog (catalog.go)

	// One meaning (meaning.go): statements that run unseen code are barriers.
	codeInFlight   atomic.Int32 // barrier entries not yet answered
	codeBeforeSync bool         // an Execute of such a statement awaits its Sync; client loop only
	ddlDone        atomic.Bool  // a schema change was answered; the catalog is stale once it is committed
}

func (s *Server) run(ctx context.Context, st *startState) {
	sess := session.New(st.identity, st.resource, s.pub, s.decider, s.cfg.Limits)
	c := &conn{srv: s, st: st, sess: sess, client: st.conn, backend: st.backend.Conn,
		cw: bufio.NewWriterSize(st.conn, 16<<10), bw: bufio.NewWriterSize(st.backend.Conn, 8<<10),
		stmts: map[string]*session.Query{}, portals: map[string]*portal{}, stmtUsed: map[*session.Query]bool{}, ended: make(chan struct{})}
	c.qcond = sync.NewCond(&c.qmu)
	c.txStatus.Store(uint32(st.backend.TxStatus))
	sess.Resolve = c.resolve
	c.cat = c.srv.cats.of(st.resource)
	sess.CatalogVersion = c.cat.version
	sess.SchemaChanged = c.ddlDone.Load
	log := s.log.With("session", sess.ID, "sub", st.identity.Subject, "resource", st.resource.Name)

	if err := sess.Start(ctx, &schemas.SessionStart{Protocol: "postgres", ClientAddr: st.conn.RemoteAddr().String(),
		ClientUser: st.params["user"], Database: st.params["database"], ApplicationName: st.params["application_name"],
		TLS: st.tls, BackendPID: st.backend.PID, Labels: labelList(st.resource.Labels)}); err != nil {
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
	key := s.cancels.add(st.backend.PID, st.secret, st.resource.Postgres.Address, st.backend.SecretKey)
	c.cancelKey = key
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.active.Inc()
	// A revocation that came in while the session was being set up, and the session's end
	// when the caller's token expires (or its maximum lifetime passes).
	if s.revocations != nil {
		if rv, ok := s.revocations.Check(time.Now(), revoke.KindIdentity, revoke.IdentityValues(st.identity.Identity)...); ok {
			go s.Revoke(rv)
		}
	}
	if end, ev, msg := sessionDeadline(st); !end.IsZero() {
		t := time.AfterFunc(time.Until(end), func() { c.terminate(ev, msg) })
		defer t.Stop()
	}

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
	close(c.ended)
	log.Info("session ended", "reason", c.endReason.Load())
}

// leave removes the session from the server's books: cancel keys, live sessions, the gauge.
func (c *conn) leave() {
	c.leaveOnce.Do(func() {
		s := c.srv
		s.cancels.remove(c.cancelKey)
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
	case <-c.ended:
		return
	case <-time.After(stuckLoopWait):
	}
	c.srv.log.Error("a session loop is still blocked after an internal error; ending the session without it (its goroutine is lost)", "session", c.sess.ID)
	c.leave()
	c.finish(context.Background(), errors.New("internal error: a session loop stayed blocked after it"))
}

// testHook, when set (tests only), sees every client message before the proxy does.
var testHook func(typ byte, body []byte)

// testHookLocked, when set (tests only), sees every client message with the session's
// queue lock held (a panic in it leaves the lock held), and how to release it.
var testHookLocked func(typ byte, body []byte, unlock func())

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
	c.finishOnce.Do(func() { c.recordEnd(ctx, cause) })
}

func (c *conn) recordEnd(ctx context.Context, cause error) {
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
		c.qmu.Lock()
		c.closed = true
		c.qcond.Broadcast()
		c.qmu.Unlock()
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

// sessionDeadline is when the gateway ends the session by itself: when the caller's token
// expires (the default), or after the resource's maximum session lifetime.
func sessionDeadline(st *startState) (time.Time, *schemas.SessionTerminated, string) {
	if st.resource.TokenExpiry == "continue" {
		life := st.resource.MaxSessionLifetime
		if life <= 0 {
			life = 12 * time.Hour
		}
		return time.Now().Add(life), &schemas.SessionTerminated{Cause: "max_lifetime"},
			fmt.Sprintf("terminating connection: the session reached the maximum lifetime of %s on this resource; reconnect", life)
	}
	exp := st.identity.Expiry
	return exp, &schemas.SessionTerminated{Cause: "token_expired"},
		fmt.Sprintf("terminating connection: the access token expired at %s; reconnect with a fresh token", exp.UTC().Format(time.RFC3339))
}

// terminate ends the session from the gateway's side (revoked, token expired): the client
// gets 57P01 with msg, a statement in flight is cancelled on the backend, and the cause is
// recorded before session.end.
func (c *conn) terminate(ev *schemas.SessionTerminated, msg string) {
	if c.endClient(ev, msg, true) {
		c.finishTerminate(ev)
	}
}

// endClient is what the client sees of a termination: the error, then the end of the
// stream (shutdown, which does not wait for the session's reader to let go of the socket
// as a close would). Without wait it gives up on a client whose writer is busy (false).
func (c *conn) endClient(ev *schemas.SessionTerminated, msg string, wait bool) bool {
	c.qmu.Lock()
	ev.InFlight = len(c.pending) > 0
	closed := c.closed
	c.qmu.Unlock()
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
	c.qmu.Lock()
	full := len(c.pending) >= pipelineHighWater
	c.qmu.Unlock()
	if !full {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for len(c.pending) >= pipelineLowWater && !c.closed {
		c.qcond.Wait()
	}
	if c.closed {
		return net.ErrClosed
	}
	return nil
}

func (c *conn) push(entries ...*entry) error {
	if err := c.waitRoom(); err != nil {
		return err
	}
	c.qmu.Lock()
	c.pending = append(c.pending, entries...)
	c.qmu.Unlock()
	return nil
}

// abortSQL makes the backend raise an error: sent in place of a refused statement inside a
// transaction, so that the backend's transaction fails exactly as it would had PostgreSQL
// refused the statement itself. The refused statement never reaches the backend.
func abortSQL(code, msg string) string {
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "$gatehouse$", ""), "'", "''")
	return "DO $gatehouse$ BEGIN RAISE EXCEPTION USING ERRCODE = '" + code + "', MESSAGE = '" + msg + "'; END $gatehouse$"
}

// abortPipeline is the proxy's own Parse/Bind/Execute of abortSQL, whose answers are not
// relayed: sent before the Sync of a pipeline in which a statement was refused.
func (c *conn) abortPipeline() ([]byte, []*entry) {
	b := encode(&pgproto3.Parse{Query: abortSQL("42501", "gatehouse: a statement of this transaction was refused by policy")},
		&pgproto3.Bind{}, &pgproto3.Execute{})
	return b, []*entry{{kind: 'P', swallow: true}, {kind: 'B', swallow: true}, {kind: 'E', swallow: true}}
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
			hint: "this statement needs a human approval, and this gateway does not hold statements for approval yet; it is refused"}
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
	c.qmu.Lock()
	busy := len(c.pending) > 0
	c.qmu.Unlock()
	if busy && q.Decision.Approval != nil && q.Decision.Approval.Mode != "fail_fast" {
		return &refusal{code: "42501", msg: fmt.Sprintf("Gatehouse: approval required (policy %s, rule %s): %s; a statement is held for approval only outside a pipeline, send it on its own", q.Decision.Policy, q.Decision.Rule, q.Decision.Reason)}
	}
	return c.approve(ctx, q, sql)
}

func (c *conn) denyResponse(q *session.Query) []byte { return denial(q).response() }

func (c *conn) readyForQuery() []byte {
	return encode(&pgproto3.ReadyForQuery{TxStatus: byte(c.txStatus.Load())})
}

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
			c.qmu.Lock()
			testHookLocked(typ, body, c.qmu.Unlock)
			c.qmu.Unlock()
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
	if c.skipToSync && typ != 'S' {
		return nil, nil
	}
	if c.nameOpsInFlight.Load() > 0 || c.namesChanged.Load() {
		switch typ {
		case 'Q', 'P', 'B', 'E', 'D', 'C':
			if err := c.syncNames(); err != nil {
				return nil, err
			}
		}
	}
	switch typ {
	case 'Q', 'P', 'F':
		if c.codeBeforeSync {
			// Still before the Sync of a statement that runs unseen code: the backend
			// reports a changed setting only at the Sync, and would read this one with it.
			c.respond(encode(pgError("ERROR", "0A000", "Gatehouse: the statement before this one changes the schema or runs code the gateway cannot see into (a DO block, or a function that is not built in), which may change what later statements mean; send a Sync before the next statement", "")))
			if typ != 'P' {
				c.respond(c.readyForQuery())
				return nil, nil
			}
			c.skipToSync = true
			c.abortAtSync = true
			return nil, nil
		}
		if err := c.waitCode(); err != nil {
			return nil, err
		}
		if c.cat.stale.Load() {
			if _, err := c.srv.cats.ensure(ctx, c.st.resource); err != nil {
				c.srv.log.Warn("catalog refresh after a schema change failed; the previous catalog stays in use", "resource", c.st.resource.Name, "err", err)
			}
		}
	}
	c.lastOps, c.lastUses = nil, false
	switch typ {
	case 'Q':
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
		var why *refusal
		if q.Decision.Effect == policy.EffectRequireApproval {
			why = c.approveNow(ctx, q, q.ApprovalText(sql))
		} else if !q.Decision.Allowed() {
			why = denial(q)
		}
		if why != nil {
			c.sess.NewResult(q).Done("denied")
			if c.txStatus.Load() != 'T' {
				c.respond(append(why.response(), c.readyForQuery()...))
				return nil, nil
			}
			// In a transaction: the backend raises the same error, so its transaction fails
			// as PostgreSQL's own would; the refused statement does not reach it.
			return encode(&pgproto3.Query{String: abortSQL(why.code, why.msg)}), c.push(&entry{kind: 'Q'})
		}
		rm, err := c.newResultMask(q)
		if err != nil {
			c.respond(append(encode(pgError("ERROR", "42501", "Gatehouse cannot apply the masking policy: "+err.Error(), "")), c.readyForQuery()...))
			return nil, nil
		}
		// A statement that runs unseen code, or changes the schema, is a barrier: the next
		// is decided once it is done (and the session's schema change is known).
		en := &entry{kind: 'Q', res: c.sess.NewResult(q), mask: rm, ddl: q.Decision.DDL, barrier: q.Decision.Code || q.Decision.DDL}
		if len(c.lastOps) > 0 {
			en.ops, en.opsQ = c.lastOps, q
			c.nameOpsInFlight.Add(1)
		}
		if en.barrier {
			c.codeInFlight.Add(1)
		}
		return raw, c.push(en)
	case 'P':
		var p pgproto3.Parse
		if err := p.Decode(body); err != nil {
			return nil, fmt.Errorf("Parse: %w", err)
		}
		if _, exists := c.stmts[p.Name]; exists && p.Name != "" {
			// As PostgreSQL answers it; the name keeps standing for its statement.
			c.respond(duplicateStatement(p.Name))
			c.skipToSync = true
			c.abortAtSync = c.sentSinceSync || c.txStatus.Load() == 'T'
			return nil, nil
		}
		if _, exists := c.stmts[p.Name]; !exists && len(c.stmts) >= maxPreparedStatements {
			c.respond(encode(pgError("ERROR", "53400", fmt.Sprintf("too many prepared statements (limit %d); deallocate some", maxPreparedStatements), "")))
			c.skipToSync = true
			return nil, nil
		}
		if !utf8.ValidString(p.Query) {
			q := c.sess.Refused(p.Query, "extended", p.Name, invalidUTF8)
			c.sess.NewResult(q).Done("denied")
			c.respond(encode(pgError("ERROR", "22021", invalidUTF8, "")))
			c.skipToSync = true
			c.abortAtSync = c.sentSinceSync || c.txStatus.Load() == 'T'
			return nil, nil
		}
		q := c.sess.OnQuery(ctx, p.Query, "extended", p.Name)
		var why *refusal
		if q.Decision.Effect == policy.EffectRequireApproval {
			why = c.approveNow(ctx, q, q.ApprovalText(p.Query))
		} else if !q.Decision.Allowed() {
			why = denial(q)
		}
		if why != nil {
			c.sess.NewResult(q).Done("denied")
			c.respond(why.response())
			c.skipToSync = true
			// PostgreSQL fails the pipeline's (implicit or explicit) transaction on an error.
			c.abortAtSync = c.sentSinceSync || c.txStatus.Load() == 'T'
			return nil, nil
		}
		c.dropStatement(p.Name) // the unnamed statement: every Parse replaces it
		c.stmts[p.Name] = q
		if q.Decision.Effect == policy.EffectRequireApproval {
			// Approved just now: its first Execute runs on this approval even when it is
			// decided again there (a statement that runs another by name is).
			if c.approved == nil {
				c.approved = map[*session.Query]bool{}
			}
			c.approved[q] = true
		}
		if len(c.lastOps) > 0 {
			if c.stmtNames == nil {
				c.stmtNames = map[*session.Query][]nameOp{}
			}
			c.stmtNames[q] = c.lastOps
		}
		if c.lastUses {
			// What it runs is looked up again at every Execute: a cursor may be declared
			// after the FETCH was prepared.
			if c.stmtUses == nil {
				c.stmtUses = map[*session.Query]bool{}
			}
			c.stmtUses[q] = true
		}
		c.sentSinceSync = true
		return raw, c.push(&entry{kind: 'P'})
	case 'B':
		var b pgproto3.Bind
		if err := b.Decode(body); err != nil {
			return nil, fmt.Errorf("Bind: %w", err)
		}
		if len(c.portals) < maxPreparedStatements || c.portals[b.DestinationPortal] != nil {
			if q, ok := c.stmts[b.PreparedStatement]; ok {
				c.portals[b.DestinationPortal] = newPortal(q, &b, c.srv.cfg.Limits.MaxSQLBytes)
			} else {
				// An unknown statement: the backend fails the Bind and skips the Execute.
				c.portals[b.DestinationPortal] = &portal{}
			}
		}
		c.sentSinceSync = true
		return raw, c.push(&entry{kind: 'B'})
	case 'E':
		var e pgproto3.Execute
		if err := e.Decode(body); err != nil {
			return nil, fmt.Errorf("Execute: %w", err)
		}
		var q, stmt *session.Query
		var rm *resultMask
		p := c.portals[e.Portal]
		if p == nil {
			// Not bound here: a cursor declared in SQL (or nothing). Its rows would reach the
			// client without a decision of their own, so the proxy refuses it.
			c.respond(encode(pgError("ERROR", "34000", fmt.Sprintf("Gatehouse: portal %q was not bound through the gateway; read a cursor declared in SQL with FETCH", e.Portal), "")))
			c.skipToSync = true
			c.abortAtSync = c.sentSinceSync || c.txStatus.Load() == 'T'
			return nil, nil
		}
		var ops []nameOp
		if p.q == nil {
			// Bound to an unknown statement: the backend answers with its own error.
			q = c.sess.Unattributed()
		} else {
			q, stmt = p.q, p.q
			if c.stmtUsed[q] || c.stmtUses[q] {
				approved := c.approved[q] && !c.stmtUsed[q]
				q = c.sess.Reexecute(ctx, q)
				if !q.Decision.Allowed() && !(approved && q.Decision.Effect == policy.EffectRequireApproval) {
					// The policy changed since the statement was prepared.
					c.sess.NewResult(q).Done("denied")
					c.respond(c.denyResponse(q))
					c.skipToSync = true
					c.abortAtSync = c.sentSinceSync || c.txStatus.Load() == 'T'
					return nil, nil
				}
			}
			var err error
			if rm, err = c.newResultMask(q); err != nil {
				c.respond(encode(pgError("ERROR", "42501", "Gatehouse cannot apply the masking policy: "+err.Error(), "")))
				c.skipToSync = true
				return nil, nil
			}
			if rm != nil {
				rm.stmt, rm.formats = stmt, p.results
				c.sess.Bound(q, e.Portal, c.maskParams(rm, p), p.binary, p.truncated)
			} else {
				c.sess.Bound(q, e.Portal, p.params, p.binary, p.truncated)
			}
		}
		if stmt != nil {
			c.stmtUsed[stmt] = true
			ops = c.stmtNames[stmt]
		}
		c.sentSinceSync = true
		en := &entry{kind: 'E', res: c.sess.NewResult(q), mask: rm, ddl: q.Decision.DDL}
		if q.Decision.Code || q.Decision.DDL {
			c.codeBeforeSync = true
		}
		if len(ops) > 0 {
			en.ops, en.opsQ = slices.Clone(ops), stmt
			c.nameOpsInFlight.Add(1)
		}
		return raw, c.push(en)
	case 'C':
		var cl pgproto3.Close
		if err := cl.Decode(body); err != nil {
			return nil, fmt.Errorf("Close: %w", err)
		}
		if cl.ObjectType == 'S' {
			c.dropStatement(cl.Name)
		} else {
			delete(c.portals, cl.Name)
		}
		c.sentSinceSync = true
		return raw, c.push(&entry{kind: 'C'})
	case 'D':
		var d pgproto3.Describe
		if err := d.Decode(body); err != nil {
			return nil, fmt.Errorf("Describe: %w", err)
		}
		c.sentSinceSync = true
		en := &entry{kind: 'D', portal: d.ObjectType == 'P'}
		if d.ObjectType == 'S' {
			en.q = c.stmts[d.Name]
		}
		return raw, c.push(en)
	case 'S':
		skipped, abort := c.skipToSync, c.abortAtSync
		c.skipToSync, c.abortAtSync = false, false
		if skipped && !c.sentSinceSync && !abort {
			c.respond(c.readyForQuery())
			return nil, nil
		}
		c.sentSinceSync = false
		sync := &entry{kind: 'S', barrier: c.codeBeforeSync}
		if c.codeBeforeSync {
			c.codeBeforeSync = false
			c.codeInFlight.Add(1)
		}
		if abort {
			msgs, entries := c.abortPipeline()
			return append(msgs, raw...), c.push(append(entries, sync)...)
		}
		return raw, c.push(sync)
	case 'H':
		c.sentSinceSync = true
		return raw, nil
	case 'd', 'c', 'f', 'X':
		return raw, nil
	case 'F':
		// The fast-path call (libpq's PQfn, large objects) names its function by OID: the
		// proxy asks the backend for the name and decides on "SELECT name()".
		var fc pgproto3.FunctionCall
		if err := fc.Decode(body); err != nil {
			return nil, fmt.Errorf("FunctionCall: %w", err)
		}
		if c.sentSinceSync {
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
		if !q.Decision.Allowed() {
			c.sess.NewResult(q).Done("denied")
			c.respond(append(c.denyResponse(q), c.readyForQuery()...))
			return nil, nil
		}
		if q.Decision.Effect == policy.EffectMask {
			// A fast-path result is one value of no known column, often binary (large
			// objects): it cannot be masked, so it is not handed out where masking applies.
			c.sess.NewResult(q).Done("denied")
			c.respond(append(encode(pgError("ERROR", "42501", fmt.Sprintf("Gatehouse: %s is masked for this caller, and a fast-path function call's result cannot be masked; call it with SELECT", name),
				"")), c.readyForQuery()...))
			return nil, nil
		}
		en := &entry{kind: 'F', res: c.sess.NewResult(q), barrier: q.Decision.Code}
		if en.barrier {
			c.codeInFlight.Add(1)
		}
		return call, c.push(en)
	case 'p':
		return nil, errors.New("unexpected password message after authentication")
	default:
		return nil, fmt.Errorf("unknown message type %q", typ)
	}
}

// backendLoop relays backend messages to the client and records results.
func (c *conn) backendLoop() error {
	r := &msgReader{r: bufio.NewReaderSize(c.backend, 16<<10), max: maxBackendMessage}
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
		popped, skipped := false, false
		switch typ {
		case '1', '2', '3': // ParseComplete, BindComplete, CloseComplete
			popped = head != nil && (head.kind == 'P' || head.kind == 'B' || head.kind == 'C')
		case 'n': // NoData answers a Describe
			popped = head != nil && head.kind == 'D'
		case 'T':
			var rd pgproto3.RowDescription
			if err := rd.Decode(body); err == nil && head != nil {
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
						c.setDescribed(head.q, cols)
					}
					popped = true
				}
			}
		case 'D':
			if head != nil && head.kind == 'R' {
				if v, err := dataRowValues(body, nil); err == nil && len(v) > 0 && !head.found {
					head.lookup <- lookupResult{value: string(v[0])}
					head.found = true
				}
			} else if head != nil && head.res != nil {
				if values, err = dataRowValues(body, values); err == nil {
					if head.mask != nil {
						raw = c.maskRow(head.mask, head.res, raw, values)
					}
					head.res.Row(values)
				} else if head.mask != nil {
					// A row the proxy cannot read is not sent unmasked.
					c.setReason("backend_error")
					c.writeClient(encode(pgError("FATAL", "08P01", "malformed DataRow from the backend: "+err.Error(), "")), true)
					c.closeBoth()
					return fmt.Errorf("backend: malformed DataRow: %w", err)
				}
			}
		case 'H': // CopyOutResponse: CopyData follows
			if head != nil && head.mask != nil {
				if len(body) > 0 && body[0] != 0 {
					c.setReason("backend_error")
					c.writeClient(encode(pgError("ERROR", "0A000", "Gatehouse cannot mask binary COPY output; use text format", "")), true)
					c.closeBoth()
					return errors.New("binary COPY of masked results refused")
				}
				head.mask.copyOut = true
			}
		case 'd': // CopyData of COPY TO STDOUT
			if head != nil && head.res != nil {
				if head.mask != nil && head.mask.copyOut {
					raw = encodeCopyData(c.maskCopyLine(head.mask, head.res, body))
					body = raw[5:]
				}
				head.res.Row([][]byte{body})
			}
		case 'V': // FunctionCallResponse: int32 length (-1 NULL), value
			if head != nil && head.kind == 'F' && len(body) >= 4 {
				var v []byte
				if n := int32(binary.BigEndian.Uint32(body)); n >= 0 && int(n) <= len(body)-4 {
					v = body[4 : 4+n]
				}
				head.res.Row([][]byte{v})
			}
		case 'S': // ParameterStatus
			if name, value, ok := parameterStatus(body); ok {
				if want, pinned := pinnedSettings[name]; pinned && value != want {
					c.settingChanged(name, value)
					return nil
				}
			}
		case 'C', 'I', 's':
			if head != nil && head.mask != nil && head.kind == 'Q' && typ != 's' {
				head.mask.nextStatement()
			}
			if head != nil && head.ddl {
				c.ddlDone.Store(true)
			}
			if head != nil && head.res != nil {
				if typ == 'C' {
					tag, _, _ := cstring(body)
					head.res.Tag(tag)
					if len(head.ops) > 0 && tag == head.ops[0].tag() {
						c.noteNameChange(nameChange{op: head.ops[0], q: head.opsQ})
						head.ops = head.ops[1:]
					}
				}
				if head.kind == 'E' {
					head.res.Done("ok")
					popped = true
				}
			}
		case 'N':
			if head != nil && head.mask != nil {
				raw, _ = maskNotice(head.mask, 'N', body)
			}
		case 'E':
			if head != nil && head.mask != nil {
				raw, _ = maskNotice(head.mask, 'E', body)
				body = raw[5:]
			}
			var er pgproto3.ErrorResponse
			_ = er.Decode(body)
			if head != nil && head.kind == 'R' && !head.found {
				head.lookup <- lookupResult{err: errors.New(er.Message)}
				head.found = true
			}
			if head != nil {
				head.errSeen = true
				if head.res != nil {
					head.res.Error(er.Code, er.Message, "backend")
				}
				switch head.kind {
				case 'E':
					if head.res != nil {
						head.res.Done("error")
					}
					popped = true
				case 'P', 'B', 'C', 'D':
					// The backend now skips to Sync; what is left is closed at ReadyForQuery.
					popped = true
				}
				if head.kind == 'P' || head.kind == 'B' || head.kind == 'C' || head.kind == 'D' || head.kind == 'E' {
					c.qmu.Lock()
					c.skipping.Store(true)
					c.qcond.Broadcast()
					c.qmu.Unlock()
				}
			}
		case 'Z':
			if len(body) == 1 {
				c.txStatus.Store(uint32(body[0]))
				// A schema change is seen by the catalog's own connection once committed.
				if body[0] == 'I' && c.ddlDone.Swap(false) {
					c.srv.cats.markStale(c.st.resource)
				}
			}
			skipped = c.skipping.Swap(false)
		}
		var werr error
		// The proxy's own messages' answers are not relayed; a ReadyForQuery is, unless it
		// ends the proxy's own query.
		if head == nil || !head.swallow || (typ == 'Z' && head.kind != 'R') {
			c.wmu.Lock()
			c.bytesOut.Add(uint64(len(raw)))
			_, werr = c.cw.Write(raw)
			c.wmu.Unlock()
		}
		if werr != nil {
			c.setReason("client_closed")
			c.closeBoth()
			return nil
		}
		if popped || typ == 'Z' {
			c.advance(typ == 'Z', skipped)
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
			if typ == 'Z' {
				// The answer is with the client: encode its events now, while the
				// client reads it and sends the next statement.
				c.sess.EncodePending()
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
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for !c.closed {
		if c.skipping.Load() && !slices.ContainsFunc(c.pending, func(e *entry) bool { return e.kind == 'S' }) {
			return true, nil
		}
		if len(c.pending) == 0 {
			return false, nil
		}
		c.qcond.Wait()
	}
	return false, net.ErrClosed
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

// setDescribed remembers the columns a Describe of prepared statement q reported: its
// later executions may come without a Describe of their own.
func (c *conn) setDescribed(q *session.Query, cols []schemas.Column) {
	c.descMu.Lock()
	defer c.descMu.Unlock()
	if c.described == nil {
		c.described = map[*session.Query][]schemas.Column{}
	}
	if len(c.described) < maxPreparedStatements {
		c.described[q] = cols
	}
}

func (c *conn) describedColumns(q *session.Query) []schemas.Column {
	c.descMu.Lock()
	defer c.descMu.Unlock()
	return c.described[q]
}

func (c *conn) forgetDescribed(q *session.Query) {
	c.descMu.Lock()
	defer c.descMu.Unlock()
	delete(c.described, q)
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

func encodeCopyData(line []byte) []byte {
	b := make([]byte, 0, 5+len(line))
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(line)))
	return append(b, line...)
}

// describeNextExecute gives the columns of a Describe(portal) to the Execute that follows
// it: Execute itself sends no RowDescription.
func (c *conn) describeNextExecute(cols []schemas.Column) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for _, e := range c.pending[1:] {
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

// advance pops the answered head entry. On ReadyForQuery it pops up to and including the
// simple query or Sync it answers, closing what the backend skipped after an error.
// Injected answers that become due are written in order.
func (c *conn) advance(ready, skipped bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if ready {
		for len(c.pending) > 0 {
			e := c.pending[0]
			c.pending = c.pending[1:]
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
		for i, e := range c.pending {
			if e.kind != 'X' {
				c.release(e)
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				break
			}
		}
	}
	for len(c.pending) > 0 && c.pending[0].kind == 'X' {
		c.writeClient(c.pending[0].inject, false)
		c.pending = c.pending[1:]
	}
	if len(c.pending) < pipelineLowWater {
		c.qcond.Broadcast()
	}
}

// release notes that entry e has been answered (qmu held): a statement that changes names
// is done, and the client loop may go on with the names it uses.
func (c *conn) release(e *entry) {
	if e.opsQ != nil {
		e.opsQ = nil
		c.nameOpsInFlight.Add(-1)
		c.qcond.Broadcast()
	}
	if e.barrier {
		e.barrier = false
		c.codeInFlight.Add(-1)
		c.qcond.Broadcast()
	}
}

// resolve is the session's Resolve: what a statement that creates, drops or runs names
// does. It notes the names the statement creates or drops (lastOps) and returns the
// statements it runs by name.
func (c *conn) resolve(d *policy.Decision, sql string) []session.Ref {
	if !namesStatement(d.Kinds) {
		return nil
	}
	ops, uses, err := c.namesOf(sql)
	c.lastUses = len(uses) > 0
	if err != nil {
		return nil // the policy service parsed it; a statement that does not parse is refused there
	}
	c.lastOps = ops
	return c.referenced(uses)
}
