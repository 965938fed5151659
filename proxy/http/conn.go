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
// connection end when it closes — an upgraded (hijacked) connection when its upgrade ends —
// or when their last request ends after that (a watch outlives the connection's idle
// state). A request holds its session from the moment it finds it (a reservation) to its
// end, so a session never ends under a request that is about to record into it.

// maxSessionsPerConn bounds the sessions one connection holds: a client rotating tokens
// on one connection ends its least recently used idle sessions; with none idle, a new token
// is refused.
const maxSessionsPerConn = 8

type connKey struct{}

// clientConn is one client connection.
type clientConn struct {
	s        *Server
	raw      net.Conn
	mu       sync.Mutex
	sess     map[[32]byte]*connSession
	gone     bool
	hijacked bool // the connection was taken over by an upgrade (WebSocket, SPDY)
}

// connSession is a session on a connection.
type connSession struct {
	c          *clientConn
	key        [32]byte
	sess       *session.Session
	unregister func()
	active     map[*exchange]struct{}
	reserved   int    // requests that found the session and have not begun yet
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
	if cc == nil {
		return
	}
	if st == http.StateHijacked {
		// net/http reports nothing more of a hijacked connection: it is closed when the
		// upgraded request's handler ends (upgradeEnded).
		cc.mu.Lock()
		cc.hijacked = true
		cc.mu.Unlock()
		return
	}
	cc.close("client_closed")
}

// upgradeEnded closes a connection whose upgrade (the only request it still carried) ended.
func (c *clientConn) upgradeEnded() {
	c.mu.Lock()
	h := c.hijacked
	c.mu.Unlock()
	if h {
		c.close("client_closed")
	}
}

func sessionKey(token string, res *config.Resource) [32]byte {
	return sha256.Sum256([]byte(res.Name + "\x00" + token))
}

// known is the live session of this token on the connection, reserved for the caller's
// request, if there is one; or why the token is refused (its session was revoked or its
// token expired).
func (c *clientConn) known(token string, res *config.Resource) (*connSession, string) {
	key := sessionKey(token, res)
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.sess[key]
	if cs == nil || cs.ended {
		return nil, ""
	}
	if cs.dead != "" {
		return nil, cs.dead
	}
	cs.lastUsed = time.Now()
	cs.reserved++
	return cs, ""
}

// session finds or starts the session of this token on the connection, reserved for the
// caller's request.
func (c *clientConn) session(ctx context.Context, token string, id *identity.Identity, res *config.Resource, start func(*session.Session) error) (*connSession, error) {
	key := sessionKey(token, res)
	if cs, dead := c.known(token, res); cs != nil || dead != "" {
		if dead != "" {
			return nil, errors.New(dead)
		}
		return cs, nil
	}
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		return nil, errors.New("the connection is closing")
	}
	sess := session.New(id, res, c.s.pub, c.s.decider, c.s.cfg.Limits)
	if err := start(sess); err != nil {
		return nil, err
	}
	// Registered and counted before anyone can find it, so that whoever ends it finds it
	// whole.
	cs := &connSession{c: c, key: key, sess: sess, active: map[*exchange]struct{}{}, lastUsed: time.Now(), reserved: 1}
	c.s.sessions.Add(1)
	c.s.active.Inc()
	cs.unregister = c.s.live.Register(sess, cs.terminate)
	c.mu.Lock()
	if old := c.sess[key]; (old != nil && !old.ended && old.dead == "") || c.gone {
		// Another request of the same token started one first, or the connection went: this
		// one ends at once (its trail: start and end), the request uses the other.
		if old != nil && !c.gone {
			old.reserved++
		}
		gone := c.gone
		cs.reserved = 0
		c.mu.Unlock()
		cs.end(ctx, "client_closed")
		if gone {
			return nil, errors.New("the connection is closing")
		}
		return old, nil
	}
	var evict []*connSession
	for len(c.sess) >= maxSessionsPerConn {
		var lru *connSession
		for _, o := range c.sess {
			if len(o.active) == 0 && o.reserved == 0 && (lru == nil || o.lastUsed.Before(lru.lastUsed)) {
				lru = o
			}
		}
		if lru == nil {
			c.mu.Unlock()
			cs.reserved = 0
			cs.end(ctx, "client_closed")
			return nil, errors.New("too many sessions on one connection: open another connection")
		}
		delete(c.sess, lru.key)
		evict = append(evict, lru)
	}
	c.sess[key] = cs
	c.mu.Unlock()
	for _, o := range evict {
		o.end(context.Background(), "replaced")
	}
	return cs, nil
}

// begin and finish bracket a request of the session (begin takes up the reservation).
func (cs *connSession) begin(x *exchange) {
	cs.c.mu.Lock()
	cs.reserved--
	cs.active[x] = struct{}{}
	cs.c.mu.Unlock()
}

// release gives a reservation back (the request ended before it began).
func (cs *connSession) release() {
	cs.c.mu.Lock()
	cs.reserved--
	endNow := (cs.c.gone || cs.dead != "") && len(cs.active) == 0 && cs.reserved == 0
	cs.c.mu.Unlock()
	if endNow {
		cs.end(context.Background(), "client_closed")
	}
}

func (cs *connSession) finish(x *exchange, in, out uint64) {
	cs.c.mu.Lock()
	delete(cs.active, x)
	cs.bytesIn += in
	cs.bytesOut += out
	endNow := (cs.c.gone || cs.dead != "") && len(cs.active) == 0 && cs.reserved == 0
	cs.c.mu.Unlock()
	if endNow {
		cs.end(context.Background(), "client_closed")
	}
}

// end records the session's end (once); reason gives way to the cause of a termination.
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
	if cs.c.sess[cs.key] == cs {
		delete(cs.c.sess, cs.key)
	}
	cs.c.mu.Unlock()
	if cs.unregister != nil {
		cs.unregister()
	}
	cs.c.s.active.Dec()
	defer cs.c.s.sessions.Done()
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
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
	if cs.endReason == "" {
		cs.endReason = ev.Cause
	}
	active := make([]*exchange, 0, len(cs.active))
	for x := range cs.active {
		active = append(active, x)
	}
	idle := len(cs.active) == 0 && cs.reserved == 0
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

// cancelAll cuts every request in flight on the connection (shutdown); the connection is
// marked gone first, so that no request begins after the cut.
func (c *clientConn) cancelAll(reason string) {
	c.mu.Lock()
	var xs []*exchange
	for _, cs := range c.sess {
		if cs.endReason == "" {
			cs.endReason = reason
		}
		cs.dead = "the gateway is shutting down"
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
		if len(cs.active) == 0 && cs.reserved == 0 {
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
