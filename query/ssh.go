package query

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// SSHSession is an SSH session's trail arranged for people: who logged in where, and per
// channel its requests with their decisions and approvals, the programs' exits, the files
// that went through, and the terminal frames in play order. Built from a Replay's events
// (SSHSessionOf); the CLI prints and plays it, and writes asciicast files from it.
type SSHSession struct {
	SessionHead
	Channels []*SSHChannel // by channel number
}

// SSHChannel is one channel of an SSH session.
type SSHChannel struct {
	Number uint32
	Type   string // session, direct-tcpip, ...
	Opened time.Time
	// Requests are the channel's requests in the order they were made.
	Requests []*SSHRequest
	// Term, Cols and Rows come from the channel's pty-req (Cols and Rows 0 without one).
	Term       string
	Cols, Rows uint32
	// Program is the request that started the channel's program (exec, shell or subsystem).
	Program *SSHRequest
	Exit    *schemas.SshExit
	Files   []schemas.SshFile
	// Frames are the channel's terminal frames in play order (PlayOrder).
	Frames []schemas.TermFrame
	// Chunks is how many ssh.io events the frames came from; Masked, HiddenInput and
	// Dropped add up their counts.
	Chunks      int
	Masked      uint64
	HiddenInput uint64
	Dropped     uint64
}

// SSHRequest is one ssh.request with what the trail says happened to it.
type SSHRequest struct {
	Seq     uint64
	Time    time.Time
	Request schemas.SshRequest
	Verdict
}

// Text is the request as the evidence reports and OCSF show it: the command of an exec,
// `shell`, `subsystem sftp`, `sftp write /path`, `open direct-tcpip db:5432`, ...
func (r *SSHRequest) Text() string { return SSHRequestText(&r.Request) }

// SSHRequestText is a request in one line, the same as the evidence reports' SQL computes
// (sshTextSQL; a ClickHouse test holds them to each other).
func SSHRequestText(p *schemas.SshRequest) string {
	hostPort := func() string { return p.Host + ":" + strconv.FormatUint(uint64(p.Port), 10) }
	size := func() string {
		return strconv.FormatUint(uint64(p.Cols), 10) + "x" + strconv.FormatUint(uint64(p.Rows), 10)
	}
	switch p.Request {
	case "exec":
		return p.Command
	case "subsystem":
		return "subsystem " + p.Subsystem
	case "sftp":
		s := "sftp " + p.SftpOp + " " + p.Path
		if p.Target != "" {
			s += " " + p.Target
		}
		return s
	case "open":
		if p.Host != "" {
			return "open " + p.ChannelType + " " + hostPort()
		}
		return "open " + p.ChannelType
	case "tcpip-forward":
		return "tcpip-forward " + hostPort()
	case "pty-req":
		return "pty-req " + p.Term + " " + size()
	case "window-change":
		return "window-change " + size()
	case "env":
		return "env " + p.EnvName
	}
	return p.Request
}

// IsSSH says whether a replay is of an SSH session: its session.start says so, or it holds
// SSH events.
func IsSSH(events []schemas.Event) bool {
	for i := range events {
		switch events[i].Type {
		case schemas.TypeSessionStart:
			var p schemas.SessionStart
			if events[i].Decode(&p) == nil && p.Protocol == "ssh" {
				return true
			}
		case schemas.TypeSshRequest, schemas.TypeSshIo, schemas.TypeSshExit, schemas.TypeSshFile:
			return true
		}
	}
	return false
}

// SSHSessionOf arranges an SSH session's events (in sequence order). An event it cannot
// decode is left out, as the replay's other views do.
func SSHSessionOf(events []schemas.Event) *SSHSession {
	s := &SSHSession{}
	channels := map[uint32]*SSHChannel{}
	channel := func(n uint32, at time.Time) *SSHChannel {
		c := channels[n]
		if c == nil {
			c = &SSHChannel{Number: n, Opened: at}
			channels[n] = c
		}
		return c
	}
	requests := map[uint64]*SSHRequest{}
	verdict := func(qid uint64) *Verdict {
		if r := requests[qid]; r != nil {
			return &r.Verdict
		}
		return &Verdict{} // a decision or approval of no recorded request: kept nowhere
	}
	chunks := map[uint32][]schemas.SshIo{}
	for i := range events {
		e := &events[i]
		if s.apply(e) || applyVerdict(e, verdict) {
			continue
		}
		switch e.Type {
		case schemas.TypeSshRequest:
			var p schemas.SshRequest
			if e.Decode(&p) != nil {
				continue
			}
			c := channel(p.Channel, e.Time)
			if c.Type == "" {
				c.Type = p.ChannelType
			}
			r := &SSHRequest{Seq: e.Seq, Time: e.Time, Request: p}
			requests[p.QueryID] = r
			c.Requests = append(c.Requests, r)
			switch p.Request {
			case "pty-req":
				c.Term, c.Cols, c.Rows = p.Term, p.Cols, p.Rows
			case "exec", "shell", "subsystem":
				c.Program = r
			}
		case schemas.TypeSshIo:
			var p schemas.SshIo
			if e.Decode(&p) == nil {
				channel(p.Channel, e.Time)
				chunks[p.Channel] = append(chunks[p.Channel], p)
			}
		case schemas.TypeSshExit:
			var p schemas.SshExit
			if e.Decode(&p) == nil {
				channel(p.Channel, e.Time).Exit = &p
			}
		case schemas.TypeSshFile:
			var p schemas.SshFile
			if e.Decode(&p) == nil {
				c := channel(p.Channel, e.Time)
				c.Files = append(c.Files, p)
			}
		}
	}
	for _, r := range requests {
		r.Outcome = outcome(&r.Verdict)
	}
	for n, cs := range chunks {
		c := channels[n]
		// Chunks are numbered within the channel; the trail has them in order already,
		// and a sort by number keeps it so.
		slices.SortStableFunc(cs, func(a, b schemas.SshIo) int { return cmp.Compare(a.Chunk, b.Chunk) })
		var frames []schemas.TermFrame
		for _, io := range cs {
			frames = append(frames, io.Frames...)
			for _, m := range io.Masked {
				c.Masked += m.Count
			}
			c.HiddenInput += io.HiddenInput
			c.Dropped += io.Dropped
		}
		c.Chunks = len(cs)
		c.Frames = PlayOrder(frames)
	}
	for _, c := range channels {
		s.Channels = append(s.Channels, c)
	}
	slices.SortFunc(s.Channels, func(a, b *SSHChannel) int { return cmp.Compare(a.Number, b.Number) })
	return s
}

// PlayOrder puts a channel's frames (in the order recorded) in the order to play them: by
// time, stably. What the client was sent (o, e) and resizes (r) keep their recorded order
// whatever their times say, so that the output replayed is byte for byte the output sent:
// a frame whose time is earlier than the one recorded before it is taken to be at that
// one's time. Input (i) may be recorded late, and goes where its time puts it.
func PlayOrder(frames []schemas.TermFrame) []schemas.TermFrame {
	type timed struct {
		at uint64
		f  schemas.TermFrame
	}
	ts := make([]timed, len(frames))
	var last uint64
	for i, f := range frames {
		at := f.TUS
		if f.Code != "i" {
			at = max(at, last)
			last = at
		}
		ts[i] = timed{at, f}
	}
	slices.SortStableFunc(ts, func(a, b timed) int { return cmp.Compare(a.at, b.at) })
	out := make([]schemas.TermFrame, len(ts))
	for i, t := range ts {
		out[i] = t.f
		out[i].TUS = t.at
	}
	return out
}

// Terminal is the channel's recorded terminal.
func (c *SSHChannel) Terminal() Terminal {
	return Terminal{Opened: c.Opened, Term: c.Term, Cols: c.Cols, Rows: c.Rows, Frames: c.Frames}
}

// Output is what the channel sent the client, in order: its o and e frames.
func (c *SSHChannel) Output() []byte { return c.Terminal().Output() }

// HasOutput says whether the channel has terminal output to play.
func (c *SSHChannel) HasOutput() bool { return c.Terminal().HasOutput() }

// Duration is the time of the channel's last frame.
func (c *SSHChannel) Duration() time.Duration { return c.Terminal().Duration() }

// Describe is the channel in a few words: `0 (shell, xterm 120x40)`, `1 (exec "uptime")`.
func (c *SSHChannel) Describe() string {
	what := c.Type
	if c.Program != nil {
		switch p := &c.Program.Request; p.Request {
		case "exec":
			what = "exec " + strconv.Quote(p.Command)
		case "subsystem":
			what = "subsystem " + p.Subsystem
		default:
			what = p.Request
		}
	}
	if c.Cols > 0 {
		what += fmt.Sprintf(", %s %dx%d", c.Term, c.Cols, c.Rows)
	}
	return fmt.Sprintf("%d (%s)", c.Number, what)
}
