package http

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// A session is one caller's token on one client connection: its requests (many, on a
// kept-alive or HTTP/2 connection) share the session's trail. A connection that carries a
// second token (a refreshed one, another caller) has a session for each. The sessions of a
// connection end when it closes, or when their last request ends after that (a WebSocket
// or a watch outlives the connection's idle state).

// maxSessionsPerConn bounds the sessions one connection holds: a client rotating tokens
// on one connection ends its oldest idle sessions.
const maxSessionsPerConn = 8

type connKey struct{}

// clientConn is one client connection.
type clientConn struct {
	s    *Server
	raw  net.Conn
	mu   sync.Mutex
	sess map[[32]byte]*connSession
	gone bool
}

// connSession is a session on a connection.
type connSession struct {
	c          *clientConn
	key        [32]byte
	sess       *session.Session
	res        *config.Resource
	unregister func()
	active     map[*exchange]struct{}
	dead       string // why new requests are refused: the session was revoked or ended
	lastUsed   time.Time
	bytesIn    uint64
	bytesOut   uint64
	endReason  string
	ended      bool
}

func (s *Server) newConn(c net.Conn) *clientConn {
	cc := &clientConn{s: s, raw: c, sess: map[[32]byte]*connSession{}}
	s.mu.Lock()
	s.conns[c] = cc
	s.mu.Unlock()
	s.open.Add(1)
	return cc
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	s.mu.Lock()
	cc := s.conns[c]
	s.mu.Unlock()
	if cc != nil && st == http.StateClosed {
		cc.close("client_closed")
	}
}

// known is the live session of this token on the connection, if there is one, or why the
// token is refused (its session was revoked or its token expired).
func (c *clientConn) known(token string, res *config.Resource) (*connSession, string) {
	key := sessionKey(token, res)
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.sess[key]
	if cs == nil {
		return nil, ""
	}
	if cs.dead != "" {
		return nil, cs.dead
	}
	cs.lastUsed = time.Now()
	return cs, ""
}

func sessionKey(token string, res *config.Resource) [32]byte {
	return sha256.Sum256([]byte(res.Name + "\x00" + token))
}

// session finds or starts the session of this token on the connection.
func (c *clientConn) session(ctx context.Context, token string, id *identity.Identity, res *config.Resource, r *http.Request, start func(*session.Session) error) (*connSession, error) {
	key := sessionKey(token, res)
	c.mu.Lock()
	if cs := c.sess[key]; cs != nil {
		if cs.dead != "" {
			c.mu.Unlock()
			return nil, errors.New(cs.dead)
		}
		cs.lastUsed = time.Now()
		c.mu.Unlock()
		return cs, nil
	}
	if c.gone {
		c.mu.Unlock()
		return nil, errors.New("the connection is closing")
	}
	c.mu.Unlock()
	sess := session.New(id, res, c.s.pub, c.s.decider, c.s.cfg.Limits)
	if err := start(sess); err != nil {
		return nil, err
	}
	cs := &connSession{c: c, key: key, sess: sess, res: res, active: map[*exchange]struct{}{}, lastUsed: time.Now()}
	c.mu.Lock()
	if old := c.sess[key]; old != nil || c.gone {
		// Another request of the same token started it first, or the connection went.
		c.mu.Unlock()
		_ = sess.End(ctx, "client_closed", nil, 0, 0)
		if old != nil {
			return old, nil
		}
		return nil, errors.New("the connection is closing")
	}
	var evict []*connSession
	if len(c.sess) >= maxSessionsPerConn {
		for _, o := range c.sess {
			if len(o.active) == 0 {
				evict = append(evict, o)
				delete(c.sess, o.key)
				if len(c.sess) < maxSessionsPerConn {
					break
				}
			}
		}
	}
	c.sess[key] = cs
	c.mu.Unlock()
	for _, o := range evict {
		o.end(context.Background(), "replaced")
	}
	cs.unregister = c.s.live.Register(sess, cs.terminate)
	c.s.active.Inc()
	c.s.sessions.Add(1)
	return cs, nil
}

// begin and finish bracket a request of the session.
func (cs *connSession) begin(x *exchange) {
	cs.c.mu.Lock()
	cs.active[x] = struct{}{}
	cs.c.mu.Unlock()
}

func (cs *connSession) finish(x *exchange, in, out uint64) {
	cs.c.mu.Lock()
	delete(cs.active, x)
	cs.bytesIn += in
	cs.bytesOut += out
	endNow := (cs.c.gone || cs.dead != "") && len(cs.active) == 0
	cs.c.mu.Unlock()
	if endNow {
		reason := "client_closed"
		if cs.endReason != "" {
			reason = cs.endReason
		}
		cs.end(context.Background(), reason)
	}
}

// end records the session's end (once).
func (cs *connSession) end(ctx context.Context, reason string) {
	cs.c.mu.Lock()
	if cs.ended {
		cs.c.mu.Unlock()
		return
	}
	cs.ended = true
	in, out := cs.bytesIn, cs.bytesOut
	if cs.endReason != "" {
		reason = cs.endReason
	}
	cs.c.mu.Unlock()
	if cs.unregister != nil {
		cs.unregister()
	}
	cs.c.s.active.Dec()
	defer cs.c.s.sessions.Done()
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cs.sess.End(ectx, reason, nil, in, out); err != nil {
		cs.c.s.log.Warn("session end not recorded", "session", cs.sess.ID, "err", err)
	}
}

// terminate ends the session for the live-session registry (revocation, token expiry):
// its requests in flight are cut (a watch or a WebSocket included), later ones refused.
func (cs *connSession) terminate(ev *schemas.SessionTerminated, msg string) func() {
	cs.sess.Record(ev)
	cs.c.mu.Lock()
	cs.dead = "session ended: " + msg
	cs.endReason = ev.Cause
	active := make([]*exchange, 0, len(cs.active))
	for x := range cs.active {
		active = append(active, x)
	}
	idle := len(cs.active) == 0
	cs.c.mu.Unlock()
	return func() {
		for _, x := range active {
			x.cut(ev.Cause, msg)
		}
		if idle {
			cs.end(context.Background(), ev.Cause)
		}
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cs.sess.Flush(fctx)
		cancel()
	}
}

// cancelAll cuts every request in flight on the connection (shutdown).
func (c *clientConn) cancelAll(reason string) {
	c.mu.Lock()
	var xs []*exchange
	for _, cs := range c.sess {
		cs.endReason = reason
		for x := range cs.active {
			xs = append(xs, x)
		}
	}
	c.mu.Unlock()
	for _, x := range xs {
		x.cut(reason, "the gateway is shutting down")
	}
}

// close marks the connection gone: idle sessions end now, busy ones after their last
// request.
func (c *clientConn) close(reason string) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	var idle []*connSession
	for _, cs := range c.sess {
		if len(cs.active) == 0 {
			idle = append(idle, cs)
		}
	}
	c.mu.Unlock()
	c.s.mu.Lock()
	delete(c.s.conns, c.raw)
	c.s.mu.Unlock()
	c.s.open.Add(-1)
	for _, cs := range idle {
		cs.end(context.Background(), reason)
	}
}
