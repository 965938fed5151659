package ssh

import (
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// conn is one authenticated client connection: its session, the connection to the host,
// and the channels relayed between them.
type conn struct {
	srv    *Server
	sess   *session.Session
	client *ssh.ServerConn
	up     *upstream
	t      *target

	chMu       sync.Mutex
	channels   map[*channel]struct{}
	nextCh     uint32 // channel numbers within the session, from 0
	forwards   *forwarding
	forwarding int // forwarding channels open (direct-tcpip, forwarded-tcpip, agent)
	wg         sync.WaitGroup

	bytesIn, bytesOut atomic.Uint64

	endOnce   sync.Once
	endReason atomic.Value // string
	closeOnce sync.Once
}

// handle runs one client connection from the key exchange to the session's end.
func (s *Server) handle(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	authenticated := false
	defer func() {
		if !authenticated {
			s.unauth.Add(-1)
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(s.cfg.AuthTimeout))
	st := &authState{}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AuthTimeout)
	sc, chans, reqs, err := ssh.NewServerConn(raw, s.serverConfig(actx, st))
	cancel()
	if err != nil {
		if st.upstream != nil {
			st.upstream.conn.Close()
		}
		if st.failures == 0 {
			s.connections.WithLabelValues("handshake").Inc()
			s.log.Debug("connection closed before authentication", "client", raw.RemoteAddr().String(), "err", err)
		}
		return
	}
	authenticated = true
	s.unauth.Add(-1)
	_ = raw.SetDeadline(time.Time{})
	defer st.upstream.conn.Close()
	s.connections.WithLabelValues("ok").Inc()
	s.run(ctx, sc, chans, reqs, st)
}

// run serves one session.
func (s *Server) run(ctx context.Context, sc *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, st *authState) {
	sess := session.New(st.identity, st.target.resource, s.pub, s.decider, s.cfg.Limits)
	c := &conn{srv: s, sess: sess, client: sc, up: st.upstream, t: st.target, channels: map[*channel]struct{}{}}
	log := s.log.With("session", sess.ID, "sub", st.identity.Subject, "resource", st.target.resource.Name, "login", st.target.login)
	if err := sess.Start(ctx, &schemas.SessionStart{Protocol: "ssh", ClientAddr: sc.RemoteAddr().String(), ClientUser: sc.User(),
		Database: st.target.resource.Name, ApplicationName: string(sc.ClientVersion()), Login: st.target.login, AuthMethod: st.method,
		Labels: labelList(st.target.resource.Labels)}); err != nil {
		s.connections.WithLabelValues("audit").Inc()
		go ssh.DiscardRequests(reqs)
		refuseAll(chans, "session refused: audit trail unavailable: "+err.Error())
		sc.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.setReason("shutdown")
		go ssh.DiscardRequests(reqs)
		refuseAll(chans, "the gateway is shutting down")
		sc.Close()
		c.finish(ctx, nil)
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.active.Inc()
	unregister := s.live.Register(sess, c.endOnWire)
	log.Info("session started", "client", sc.RemoteAddr().String(), "auth", st.method)

	// The host going away ends the session too.
	upDone := make(chan struct{})
	go func() {
		_ = c.up.conn.Wait()
		c.setReason("backend_closed")
		close(upDone)
		c.close()
	}()
	c.wg.Add(3)
	go c.contained("client requests", func() { c.globalRequests(ctx, reqs, true) })
	go c.contained("host requests", func() { c.globalRequests(ctx, c.up.reqs, false) })
	go c.contained("host channels", func() { c.hostChannels(ctx) })
	for nc := range chans {
		c.wg.Add(1)
		go c.contained("channel open", func() { c.openChannel(ctx, nc) })
	}
	c.setReason("client_closed")
	c.close()
	<-upDone
	c.wg.Wait()

	unregister()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Dec()
	c.finish(ctx, nil)
	log.Info("session ended", "reason", c.endReason.Load())
}

// contained runs f, turning a panic into the end of the session (never of the process).
func (c *conn) contained(what string, f func()) {
	defer c.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("panic in ssh session", "where", what, "session", c.sess.ID, "panic", r, "stack", string(debug.Stack()))
			c.setReason("internal_error")
			c.close()
		}
	}()
	f()
}

// recovered turns a panic in one of a session's own goroutines (its pumps, its request
// workers: they read what the client and the host send) into the end of that session.
func (c *conn) recovered(what string) {
	if r := recover(); r != nil {
		c.srv.log.Error("panic in ssh session", "where", what, "session", c.sess.ID, "panic", r, "stack", string(debug.Stack()))
		c.setReason("internal_error")
		c.close()
	}
}

// setReason sets why the session ends, the first time.
func (c *conn) setReason(r string) {
	c.endReason.CompareAndSwap(nil, r)
}

// close closes both connections (once).
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.client.Close()
		c.up.conn.Close()
	})
}

// finish records session.end.
func (c *conn) finish(ctx context.Context, cause error) {
	c.endOnce.Do(func() {
		reason, _ := c.endReason.Load().(string)
		if reason == "" {
			reason = "client_closed"
		}
		if err := c.sess.End(ctx, reason, cause, c.bytesIn.Load(), c.bytesOut.Load()); err != nil {
			c.srv.log.Warn("session end not recorded", "session", c.sess.ID, "err", err)
		}
	})
}

// shutdown ends the session because the gateway stops.
func (c *conn) shutdown() {
	told := c.tellAll("\r\ngatehouse: the gateway is shutting down; reconnect\r\n")
	c.setReason("shutdown")
	go func() {
		waitTold(told)
		c.close()
	}()
}

// endOnWire ends the session for the live-session registry: every open channel's client
// is told why (on stderr), the cause is recorded, then both connections close.
func (c *conn) endOnWire(ev *schemas.SessionTerminated, msg string) func() {
	c.setReason(ev.Cause)
	c.sess.Record(ev)
	told := c.tellAll("\r\ngatehouse: " + msg + "\r\n")
	return func() {
		waitTold(told)
		// Closed first: the trail already holds session.terminated ahead of session.end,
		// and a slow JetStream must not keep a revoked caller connected.
		c.close()
		fctx, cancel := context.WithTimeout(context.Background(), flushWait)
		_ = c.sess.Flush(fctx)
		cancel()
	}
}

// tellWait bounds how long a client that does not read holds up its session's end.
const tellWait = 500 * time.Millisecond

// waitTold waits until the clients were told, or tellWait.
func waitTold(told []<-chan struct{}) {
	t := time.NewTimer(tellWait)
	defer t.Stop()
	for _, d := range told {
		select {
		case <-d:
		case <-t.C:
			return
		}
	}
}

// tellAll writes msg to the stderr of every open session channel, without waiting on a
// client that does not read; each returned channel is closed once its client was told.
func (c *conn) tellAll(msg string) []<-chan struct{} {
	c.chMu.Lock()
	chs := make([]*channel, 0, len(c.channels))
	for ch := range c.channels {
		chs = append(chs, ch)
	}
	c.chMu.Unlock()
	var told []<-chan struct{}
	for _, ch := range chs {
		told = append(told, ch.notify(msg))
	}
	return told
}

// labelList is a resource's labels as sorted key=value strings.
func labelList(l map[string]string) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, 0, len(l))
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// refuseAll turns away every channel the client opens (when the session could not start).
func refuseAll(chans <-chan ssh.NewChannel, msg string) {
	go func() {
		for nc := range chans {
			_ = nc.Reject(ssh.Prohibited, msg)
		}
	}()
}

// globalRequests relays the global requests of one side to the other: port forwarding
// asked by the client is decided; keepalives are answered here; the rest is refused.
func (c *conn) globalRequests(ctx context.Context, reqs <-chan *ssh.Request, fromClient bool) {
	for r := range reqs {
		switch {
		case fromClient && (r.Type == "tcpip-forward" || r.Type == "cancel-tcpip-forward"):
			c.remoteForward(ctx, r)
		case r.Type == "keepalive@openssh.com":
			_ = r.Reply(false, nil) // what OpenSSH answers: "I am alive, and don't know this"
		default:
			// hostkeys-00@openssh.com, no-more-sessions@openssh.com and the rest: the
			// host's host keys are not the gateway's, and nothing else is relayed.
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}
}

// channelNumber hands out the session's next channel number.
func (c *conn) channelNumber() uint32 {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	n := c.nextCh
	c.nextCh++
	return n
}

// track adds a live session channel, within the connection's limit (which counts its
// forwarding channels too).
func (c *conn) track(ch *channel) bool {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	if len(c.channels)+c.forwarding >= c.srv.cfg.MaxChannels {
		return false
	}
	c.channels[ch] = struct{}{}
	return true
}

// reserve counts a forwarding channel within the connection's limit; release gives it back.
func (c *conn) reserve() bool {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	if len(c.channels)+c.forwarding >= c.srv.cfg.MaxChannels {
		return false
	}
	c.forwarding++
	return true
}

func (c *conn) release() {
	c.chMu.Lock()
	c.forwarding--
	c.chMu.Unlock()
}

func (c *conn) untrack(ch *channel) {
	c.chMu.Lock()
	delete(c.channels, ch)
	c.chMu.Unlock()
}

// openChannel handles a channel the client opens.
func (c *conn) openChannel(ctx context.Context, nc ssh.NewChannel) {
	switch nc.ChannelType() {
	case "session":
		c.openSession(ctx, nc)
	case "direct-tcpip":
		c.openDirect(ctx, nc)
	default:
		n := c.channelNumber()
		reason := fmt.Sprintf("channel type %q is not relayed by the gateway", nc.ChannelType())
		if nc.ChannelType() == "x11" {
			reason = "X11 forwarding is never allowed through the gateway"
		}
		c.sess.RefuseRequest(func(id uint64) schemas.Payload {
			return &schemas.SshRequest{QueryID: id, Channel: n, ChannelType: truncate(nc.ChannelType(), 64), Request: "open"}
		}, "channel-type", reason)
		_ = nc.Reject(ssh.Prohibited, reason)
	}
}

// hostChannels handles channels the host opens toward the client: forwarded-tcpip for a
// remote forwarding the client was allowed, auth-agent@openssh.com for an agent forwarding
// it was allowed. Nothing else (X11 never).
func (c *conn) hostChannels(ctx context.Context) {
	for nc := range c.up.chans {
		switch nc.ChannelType() {
		case "forwarded-tcpip":
			c.relayFromHost(ctx, nc, c.forwardsAllowed())
		case "auth-agent@openssh.com":
			c.relayFromHost(ctx, nc, c.agentAllowed())
		default:
			_ = nc.Reject(ssh.Prohibited, "not relayed by the gateway")
		}
	}
}
