package ssh

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// A session channel: the client's requests are decided one at a time before they reach
// the host (pty-req, env, then the one program: exec, shell or subsystem); the client's
// input reaches the host only once a program is allowed; the host's output and exit
// status go back, recorded (record.go) and, for a program without a terminal whose
// decision masks, masked (stream.go). sftp and scp are looked into (files.go).

// channel is one session channel.
type channel struct {
	c      *conn
	n      uint32 // number within the session
	client ssh.Channel
	host   ssh.Channel
	start  time.Time

	mu         sync.Mutex // guards the program's state below
	program    string     // exec, shell or subsystem, once allowed
	progID     uint64     // the request that started it
	pty        *ptyReq
	ended      string // exited, signal
	status     uint32
	signal     string
	rec        *recorder
	outMask    *mask.Stream // the client's stdout and stderr are masked (a program without a terminal)
	errMask    *mask.Stream
	files      fileInspector // sftp or scp, when the program is one
	started    chan struct{} // closed when the program may read input
	done       chan struct{} // closed when the channel is closed for good
	cancel     chan string   // closed when the client went away: every held request gives up
	cancelOnce sync.Once
	exitReqs   []*ssh.Request // the host's exit-status / exit-signal, relayed at the end
	cw         sync.Mutex     // orders what goes to the client: stdout (output and sftp replies), stderr, EOF
	bytesIn    uint64
	bytesOut   uint64
}

// ptyReq is what the client asked of its terminal.
type ptyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// openSession relays a session channel: the same channel is opened on the host, then the
// client's one is accepted.
func (c *conn) openSession(ctx context.Context, nc ssh.NewChannel) {
	n := c.channelNumber()
	ch := &channel{c: c, n: n, start: time.Now(), started: make(chan struct{}), done: make(chan struct{}), cancel: make(chan string)}
	if !c.track(ch) {
		_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d channels at once through the gateway", c.srv.cfg.MaxChannels))
		return
	}
	host, hostReqs, err := c.up.conn.OpenChannel("session", nil)
	if err != nil {
		c.untrack(ch)
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			_ = nc.Reject(oe.Reason, oe.Message)
		} else {
			_ = nc.Reject(ssh.ConnectionFailed, "the host did not open the channel: "+err.Error())
		}
		return
	}
	client, clientReqs, err := nc.Accept()
	if err != nil {
		c.untrack(ch)
		host.Close()
		return
	}
	ch.mu.Lock() // tellAll may look at the channel from now
	ch.client, ch.host = client, host
	ch.mu.Unlock()
	ch.rec = newRecorder(c, n, c.srv.cfg.MaxRecordedBytes)
	ch.rec.overflow = func() {
		c.srv.log.Warn("keystrokes past the recording bound: closing the channel", "session", c.sess.ID, "channel", n)
		ch.brokenFiles(errors.New("what is typed here passed the recording limit, and nothing typed goes unrecorded"))
	}
	c.wg.Add(1)
	go c.contained("session channel", func() { ch.run(ctx, clientReqs, hostReqs) })
}

// run relays the channel until both sides are done with it.
func (ch *channel) run(ctx context.Context, clientReqs, hostReqs <-chan *ssh.Request) {
	defer ch.c.untrack(ch)
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); defer ch.c.recovered("stdout pump"); ch.pumpOut(ch.host, "o") }()
	go func() { defer pumps.Done(); defer ch.c.recovered("stderr pump"); ch.pumpOut(ch.host.Stderr(), "e") }()
	inDone := make(chan struct{})
	go func() { defer close(inDone); defer ch.c.recovered("input pump"); ch.pumpIn(ctx) }()

	hostDone := make(chan struct{})
	go func() {
		defer close(hostDone)
		defer ch.c.recovered("host requests")
		for r := range hostReqs {
			ch.hostRequest(r)
		}
	}()
	// The client's requests are decided one at a time by a worker, so that the client's
	// closing the channel (or going away) is seen while a request waits for an approval:
	// the wait gives up, and what was still queued is dropped.
	clientDone := make(chan struct{})
	queue := make(chan *ssh.Request, 64)
	var gone atomic.Bool
	go func() {
		defer close(clientDone)
		defer ch.c.recovered("client requests")
		for r := range queue {
			if gone.Load() {
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
				continue
			}
			ch.clientRequest(ctx, r)
		}
		ch.host.Close()
	}()
	go func() {
		for r := range clientReqs {
			select {
			case queue <- r:
			default:
				// The worker is held (an approval) and the client keeps asking: what does
				// not fit is refused, so that this loop never blocks x/crypto's, which must
				// go on reading the connection (its close, other channels).
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
		}
		gone.Store(true)
		ch.cancelOnce.Do(func() { close(ch.cancel) })
		close(queue)
	}()
	// The host's output is complete when both pumps hit EOF; its exit status and close
	// come on the request channel.
	pumps.Wait()
	// EOF covers stderr too: only once both are done (stderr after EOF is a protocol error
	// OpenSSH disconnects for).
	ch.closeClientWrite()
	<-hostDone
	ch.mu.Lock()
	exits := ch.exitReqs
	ch.mu.Unlock()
	for _, r := range exits {
		ok, err := ch.client.SendRequest(r.Type, r.WantReply, r.Payload)
		if r.WantReply {
			_ = r.Reply(ok && err == nil, nil)
		}
	}
	ch.c.bytesOut.Add(ch.outBytes())
	ch.client.Close()
	<-clientDone
	close(ch.done)
	<-inDone // what the client sent last is decided and recorded before the channel's end
	ch.finish()
}

func (ch *channel) outBytes() uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.bytesOut
}

// finish records how the channel's program ended, and what the recorder holds.
func (ch *channel) finish() {
	ch.mu.Lock()
	prog, id := ch.program, ch.progID
	ended, status, signal := ch.ended, ch.status, ch.signal
	in, out := ch.bytesIn, ch.bytesOut
	files := ch.files
	ch.mu.Unlock()
	if files != nil {
		for _, f := range files.close() {
			ch.c.sess.Record(f.event(id, ch.n))
		}
	}
	ch.rec.close()
	if prog == "" {
		return
	}
	if ended == "" {
		ended = "closed"
	}
	ch.c.sess.Record(&schemas.SshExit{QueryID: id, Channel: ch.n, Ended: ended, ExitStatus: status, ExitSignal: signal,
		BytesIn: in, StdinSha256: ch.rec.stdinSum(), BytesOut: out, DurationUS: uint64(time.Since(ch.start).Microseconds())})
	fctx, cancel := context.WithTimeout(context.Background(), flushWait)
	_ = ch.c.sess.Durable(fctx)
	cancel()
}

// flushWait bounds how long the end of a channel or a session waits for JetStream to
// acknowledge its record in strict mode (what it has not acknowledged stays in the spool).
const flushWait = 5 * time.Second

// notify writes a line of the gateway's to the client's stderr, without waiting on a client
// that does not read; the returned channel is closed once it is written.
func (ch *channel) notify(msg string) <-chan struct{} {
	done := make(chan struct{})
	ch.mu.Lock()
	client := ch.client
	ch.mu.Unlock()
	if client == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ch.toClient(true, []byte(msg))
	}()
	return done
}

// A channel's pumps read into a small buffer while it is idle (most open sessions are), and
// a large one once a read fills it (a transfer).
const pumpStart, pumpMax = 2 << 10, 32 << 10

// grow is the buffer for the next read, after one of n bytes into buf.
func grow(buf []byte, n int) []byte {
	if n == len(buf) && len(buf) < pumpMax {
		return make([]byte, pumpMax)
	}
	return buf
}

// pumpOut relays the host's stdout or stderr to the client, masked where the program's
// decision masks, and records it.
func (ch *channel) pumpOut(from io.Reader, code string) {
	buf := make([]byte, pumpStart)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			ch.output(code, buf[:n])
			buf = grow(buf, n)
		}
		if err != nil {
			ch.output(code, nil) // the rest a masker held
			return
		}
	}
}

// output handles a piece of the host's output; nil at its end.
func (ch *channel) output(code string, p []byte) {
	ch.mu.Lock()
	m := ch.outMask
	if code == "e" {
		m = ch.errMask
	}
	files, id := ch.files, ch.progID
	ch.mu.Unlock()
	if files != nil && code == "o" && p != nil {
		fwd, recs, err := files.fromHost(p)
		for _, f := range recs {
			ch.c.sess.Record(f.event(id, ch.n))
		}
		if err != nil {
			ch.brokenFiles(err)
			return
		}
		p = fwd
	}
	var masked int
	if m != nil {
		if p == nil {
			p, masked = m.Flush()
		} else {
			p, masked = m.Feed(p)
		}
		ch.rec.countMasked(masked, m)
	}
	if len(p) == 0 {
		return
	}
	if files == nil {
		ch.rec.output(code, p)
	}
	ch.toClient(code == "e", p)
	ch.mu.Lock()
	ch.bytesOut += uint64(len(p))
	ch.mu.Unlock()
}

// toClient writes p to the client's stdout or stderr. Every write to the client and its EOF
// go through here, one at a time: an sftp reply must not land inside a packet of the host's,
// and x/crypto's channel does not order an EOF against a concurrent write.
func (ch *channel) toClient(stderr bool, p []byte) {
	ch.cw.Lock()
	defer ch.cw.Unlock()
	if stderr {
		_, _ = ch.client.Stderr().Write(p)
		return
	}
	_, _ = ch.client.Write(p)
}

// closeClientWrite sends the client EOF (nothing more on stdout or stderr).
func (ch *channel) closeClientWrite() {
	ch.cw.Lock()
	defer ch.cw.Unlock()
	_ = ch.client.CloseWrite()
}

// pumpIn relays the client's input to the host once a program is allowed (before that it
// waits: nothing reaches the host before the decision).
func (ch *channel) pumpIn(ctx context.Context) {
	select {
	case <-ch.started:
	case <-ch.done:
		return
	}
	buf := make([]byte, pumpStart)
	for {
		n, err := ch.client.Read(buf)
		if n > 0 {
			ch.c.bytesIn.Add(uint64(n))
			ch.mu.Lock()
			ch.bytesIn += uint64(n)
			files := ch.files
			ch.mu.Unlock()
			p := buf[:n]
			if files != nil {
				fwd, reply, recs, ferr := files.fromClient(p)
				for _, f := range recs {
					ch.c.sess.Record(f.event(ch.progID, ch.n))
				}
				if len(reply) > 0 {
					ch.toClient(false, reply)
				}
				if ferr != nil {
					ch.brokenFiles(ferr)
					return
				}
				p = fwd
			} else {
				ch.rec.input(p)
			}
			if len(p) > 0 {
				if _, werr := ch.host.Write(p); werr != nil {
					return
				}
			}
			buf = grow(buf, n)
		}
		if err != nil {
			_ = ch.host.CloseWrite()
			return
		}
	}
}

// brokenFiles closes a channel the gateway cannot follow: a file protocol it cannot read
// (a malformed packet, a limit reached: what it cannot read, it cannot decide), keystrokes
// past the recording bound.
func (ch *channel) brokenFiles(err error) {
	<-ch.notify("gatehouse: closing the channel: " + err.Error() + "\r\n")
	ch.host.Close()
	ch.client.Close()
}

// hostRequest relays a request of the host's (exit-status, exit-signal, eow) to the client.
func (ch *channel) hostRequest(r *ssh.Request) {
	switch r.Type {
	case "exit-status":
		if len(r.Payload) >= 4 {
			ch.mu.Lock()
			ch.ended, ch.status = "exited", binary.BigEndian.Uint32(r.Payload)
			ch.mu.Unlock()
		}
	case "exit-signal":
		var sig struct {
			Signal     string
			CoreDumped bool
			Msg, Lang  string
		}
		if ssh.Unmarshal(r.Payload, &sig) == nil {
			ch.mu.Lock()
			ch.ended, ch.signal = "signal", truncate(sig.Signal, 32)
			ch.mu.Unlock()
		}
	}
	if r.Type == "exit-status" || r.Type == "exit-signal" {
		// Relayed at the channel's end, after the last output and EOF (run), in the order
		// the host sent them in: data, EOF, exit status, close.
		ch.mu.Lock()
		ch.exitReqs = append(ch.exitReqs, r)
		ch.mu.Unlock()
		return
	}
	ok, err := ch.client.SendRequest(r.Type, r.WantReply, r.Payload)
	if r.WantReply {
		_ = r.Reply(ok && err == nil, nil)
	}
}

// clientRequest decides one request of the client's and relays it when allowed.
func (ch *channel) clientRequest(ctx context.Context, r *ssh.Request) {
	switch r.Type {
	case "pty-req":
		var p ptyReq
		if ssh.Unmarshal(r.Payload, &p) != nil {
			ch.malformed(r)
			return
		}
		q := ch.decide(ctx, schemas.SshRequest{Request: "pty-req", Term: truncate(p.Term, 64), Cols: p.Cols, Rows: p.Rows},
			&schemas.SSHRequest{Term: p.Term})
		if ch.enforce(ctx, q, r, "pty-req", "") {
			// A terminal is the host's to grant (no-pty, PermitTTY no): only one it granted
			// makes the channel's input keystrokes.
			ok, err := ch.host.SendRequest(r.Type, true, r.Payload)
			granted := ok && err == nil
			if granted {
				ch.mu.Lock()
				ch.pty = &p
				ch.mu.Unlock()
				ch.rec.terminal(p.Term, p.Cols, p.Rows)
			}
			if r.WantReply {
				_ = r.Reply(granted, nil)
			}
		}
	case "env":
		var e struct{ Name, Value string }
		if ssh.Unmarshal(r.Payload, &e) != nil {
			ch.malformed(r)
			return
		}
		q := ch.decide(ctx, schemas.SshRequest{Request: "env", EnvName: truncate(e.Name, 256)},
			&schemas.SSHRequest{EnvName: e.Name, EnvValue: e.Value})
		if ch.enforce(ctx, q, r, "env", "") {
			ch.forward(r)
		}
	case "exec":
		var e struct{ Command string }
		if ssh.Unmarshal(r.Payload, &e) != nil {
			ch.malformed(r)
			return
		}
		ch.startProgram(ctx, r, "exec", e.Command)
	case "shell":
		ch.startProgram(ctx, r, "shell", "")
	case "subsystem":
		var e struct{ Name string }
		if ssh.Unmarshal(r.Payload, &e) != nil {
			ch.malformed(r)
			return
		}
		ch.startProgram(ctx, r, "subsystem", e.Name)
	case "window-change":
		var w struct{ Cols, Rows, Width, Height uint32 }
		if ssh.Unmarshal(r.Payload, &w) == nil {
			ch.rec.resize(w.Cols, w.Rows)
		}
		ch.forward(r)
	case "signal", "break", "eow@openssh.com":
		ch.forward(r)
	case "auth-agent-req@openssh.com":
		q := ch.decide(ctx, schemas.SshRequest{Request: "auth-agent-req"}, &schemas.SSHRequest{})
		if ch.enforce(ctx, q, r, "auth-agent-req", "") {
			ch.c.allowAgent()
			ch.forward(r)
		}
	case "x11-req":
		q := ch.c.sess.RefuseRequest(func(id uint64) schemas.Payload {
			return &schemas.SshRequest{QueryID: id, Channel: ch.n, ChannelType: "session", Request: "x11-req"}
		}, "x11", "X11 forwarding is never allowed through the gateway")
		ch.enforce(ctx, q, r, "x11-req", "")
	default:
		q := ch.c.sess.RefuseRequest(func(id uint64) schemas.Payload {
			return &schemas.SshRequest{QueryID: id, Channel: ch.n, ChannelType: "session", Request: truncate(r.Type, 64)}
		}, "request-type", fmt.Sprintf("channel request %q is not relayed by the gateway", truncate(r.Type, 64)))
		ch.enforce(ctx, q, r, r.Type, "")
	}
}

// malformed refuses a request whose payload does not parse.
func (ch *channel) malformed(r *ssh.Request) {
	q := ch.c.sess.RefuseRequest(func(id uint64) schemas.Payload {
		return &schemas.SshRequest{QueryID: id, Channel: ch.n, ChannelType: "session", Request: truncate(r.Type, 64)}
	}, "malformed", fmt.Sprintf("malformed %q request", truncate(r.Type, 64)))
	_ = q
	if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// forward sends the client's request to the host and relays the host's answer.
func (ch *channel) forward(r *ssh.Request) {
	ok, err := ch.host.SendRequest(r.Type, r.WantReply, r.Payload)
	if r.WantReply {
		_ = r.Reply(ok && err == nil, nil)
	}
}

// decide records the request (ev, bounded) and asks for a decision on part (as sent).
func (ch *channel) decide(ctx context.Context, ev schemas.SshRequest, part *schemas.SSHRequest) *session.Query {
	ev.Channel, ev.ChannelType = ch.n, "session"
	return ch.c.sess.OnRequest(ctx, func(id uint64) schemas.Payload {
		e := ev
		e.QueryID = id
		return &e
	}, func(req *schemas.DecisionRequest) {
		p := *part
		p.Login, p.Channel = ch.c.t.login, "session"
		if p.Request == "" {
			p.Request = ev.Request
		}
		req.SSH = &p
	})
}

// enforce settles a decision on request r: an allowed one (or one approved while the client
// waits) returns true, for the caller to relay; otherwise the client is told why on stderr
// and the request fails. what names the request for the message; text is what approvers
// are shown.
func (ch *channel) enforce(ctx context.Context, q *session.Query, r *ssh.Request, what, text string) bool {
	msg, ok := ch.settle(ctx, q, what, text)
	if !ok {
		ch.refuse(r, msg)
	}
	return ok
}

// settle settles a decision: allowed (or approved while the client waits), or the message
// that says why not.
func (ch *channel) settle(ctx context.Context, q *session.Query, what, text string) (string, bool) {
	d := &q.Decision
	if d.Effect == schemas.EffectRequireApproval {
		if text == "" {
			text = what
		}
		out := ch.hold(ctx, q, text)
		if out.Approved {
			return "", true
		}
		return fmt.Sprintf("%s not run: %s", what, out.Message), false
	}
	if d.Allowed() {
		return "", true
	}
	return fmt.Sprintf("%s denied: %s", what, d.Reason), false
}

// deniedStatus is the exit status of a program the gateway did not run (a shell's "permission
// denied").
const deniedStatus = 126

// denyProgram ends a channel whose program is refused as a program that could not run
// would: the reason on stderr, exit status 126, the channel closed. (Failing the request
// instead makes OpenSSH's ssh print only "exec request failed" and drop the reason.)
func (ch *channel) denyProgram(r *ssh.Request, msg string) {
	if r.WantReply {
		_ = r.Reply(true, nil)
	}
	ch.toClient(true, []byte("gatehouse: "+msg+"\r\n"))
	_, _ = ch.client.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{deniedStatus}))
	ch.closeClientWrite()
	ch.client.Close()
}

// refuse tells the client why on its stderr and fails the request.
func (ch *channel) refuse(r *ssh.Request, msg string) {
	ch.toClient(true, []byte("gatehouse: "+msg+"\r\n"))
	if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// hold waits for an approval of q while the client waits, telling it so on stderr.
func (ch *channel) hold(ctx context.Context, q *session.Query, text string) session.Outcome {
	sum := sha256.Sum256([]byte(ch.c.t.login + "\x00" + text))
	return ch.c.sess.HoldFor(ctx, ch.c.srv.approvals, session.Hold{
		Query: q, Statement: text, Hash: hex.EncodeToString(sum[:]),
		Notify: func(message, hint string) {
			msg := "gatehouse: " + message
			if hint != "" {
				msg += "\r\n" + hint
			}
			ch.toClient(true, []byte(msg+"\r\n"))
		},
		Cancelled: ch.cancel,
	})
}

// startProgram decides exec, shell or subsystem: one per channel.
func (ch *channel) startProgram(ctx context.Context, r *ssh.Request, kind, arg string) {
	ch.mu.Lock()
	running := ch.program != ""
	pty := ch.pty != nil
	ch.mu.Unlock()
	ev := schemas.SshRequest{Request: kind}
	part := &schemas.SSHRequest{Request: kind}
	text := kind
	switch kind {
	case "exec":
		cmd, truncated := arg, false
		if lim := ch.c.srv.cfg.Limits.MaxSQLBytes; lim > 0 && len(cmd) > lim {
			cmd, truncated = truncate(cmd, lim), true
		}
		ev.Command, ev.Truncated = cmd, truncated
		part.Command = arg
		text = arg
	case "subsystem":
		ev.Subsystem, part.Subsystem = truncate(arg, 64), arg
		text = "subsystem " + arg
	}
	if running {
		q := ch.c.sess.RefuseRequest(func(id uint64) schemas.Payload {
			e := ev
			e.QueryID, e.Channel, e.ChannelType = id, ch.n, "session"
			return &e
		}, "one-program", "the channel runs a program already")
		_ = q
		ch.refuse(r, kind+" refused: the channel runs a program already")
		return
	}
	if kind == "exec" && len(arg) > schemas.MaxStatementBytes {
		q := ch.c.sess.RefuseRequest(func(id uint64) schemas.Payload {
			e := ev
			e.QueryID, e.Channel, e.ChannelType = id, ch.n, "session"
			return &e
		}, "command-size", fmt.Sprintf("the command is %d bytes, over the %d the gateway decides", len(arg), schemas.MaxStatementBytes))
		ch.denyProgram(r, "exec denied: "+q.Decision.Reason)
		return
	}
	q := ch.decide(ctx, ev, part)
	if msg, ok := ch.settle(ctx, q, kind, text); !ok {
		ch.mu.Lock()
		ch.program = "denied" // no other program on this channel, whatever the client asks
		ch.mu.Unlock()
		ch.denyProgram(r, msg)
		return
	}
	var files fileInspector
	switch {
	case kind == "subsystem" && arg == "sftp":
		files = ch.newSFTP(ctx)
	case kind == "exec":
		files = ch.newSCP(ctx, arg)
	}
	var om, em *mask.Stream
	if d := q.Decision; d.Effect == schemas.EffectMask && d.Mask != nil && len(d.Mask.Detectors) > 0 {
		m, err := ch.c.srv.masks.Get(d.Mask)
		if err != nil {
			ch.refuse(r, "cannot mask as the policy asks: "+err.Error())
			return
		}
		if !pty && files == nil {
			om, em = mask.NewStream(m), mask.NewStream(m)
		} else if files == nil {
			ch.rec.maskWith(m)
		}
	}
	ch.mu.Lock()
	ch.program, ch.progID, ch.outMask, ch.errMask, ch.files = kind, q.ID, om, em, files
	ch.mu.Unlock()
	ch.rec.program(q.ID, pty, files != nil)
	ok, err := ch.host.SendRequest(r.Type, r.WantReply, r.Payload)
	if r.WantReply {
		_ = r.Reply(ok && err == nil, nil)
	}
	if ok || !r.WantReply {
		close(ch.started)
	}
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
