package cli

// The replay of an SSH session: the session in a few lines, its channels with their
// requests, decisions, approvals, exits and files, then each channel's terminal played at
// the speed it was recorded (or faster, or at once), or written as an asciicast file.

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

// sshReplayFlags are the flags of `sessions replay` that an SSH session uses.
type sshReplayFlags struct {
	speed     *float64
	noWait    *bool
	noPlay    *bool
	maxIdle   *time.Duration
	channel   *string
	asciicast *string
	input     *bool
}

// sshOnly names a flag given that only an SSH session can use, if any.
func (f *sshReplayFlags) sshOnly() string {
	switch {
	case *f.asciicast != "":
		return "--asciicast"
	case *f.channel != "":
		return "--channel"
	case *f.input:
		return "--input"
	}
	return ""
}

// sleeper waits d, or until ctx is done (then it returns ctx's error). Tests replace it.
type sleeper func(ctx context.Context, d time.Duration) error

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// player writes a channel's output (o and e frames) to a terminal with the pauses between
// frames as recorded: divided by speed, at most maxIdle (0: no cap), none with noWait.
type player struct {
	sleep   sleeper
	speed   float64
	noWait  bool
	maxIdle time.Duration
}

// play writes the frames' output in order; it stops when ctx is done, with ctx's error.
func (p *player) play(ctx context.Context, w io.Writer, frames []schemas.TermFrame) error {
	var at uint64
	for _, f := range frames {
		if f.Code != "o" && f.Code != "e" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !p.noWait && f.TUS > at {
			d := time.Duration(float64(time.Duration(f.TUS-at)*time.Microsecond) / p.speed)
			if p.maxIdle > 0 && d > p.maxIdle {
				d = p.maxIdle
			}
			if d > 0 {
				if err := p.sleep(ctx, d); err != nil {
					return err
				}
			}
		}
		at = max(at, f.TUS)
		if _, err := io.WriteString(w, f.Data); err != nil {
			return err
		}
	}
	return nil
}

// replaySSH prints an SSH session and plays its terminals, or writes one as asciicast.
func replaySSH(ctx context.Context, stdout, stderr io.Writer, r *query.Replay, f *sshReplayFlags, sleep sleeper) error {
	s := query.SSHSessionOf(r.Events)
	var pick *query.SSHChannel
	if *f.channel != "" {
		n, err := strconv.ParseUint(*f.channel, 10, 32)
		if err != nil {
			return usageError{fmt.Sprintf("--channel: %q is not a channel number", *f.channel)}
		}
		for _, c := range s.Channels {
			if c.Number == uint32(n) {
				pick = c
			}
		}
		if pick == nil {
			return fmt.Errorf("session %s has no channel %d; it has %s", r.SessionID, n, channelList(s, false))
		}
	}
	if *f.asciicast != "" {
		if pick == nil {
			for _, c := range s.Channels {
				if c.HasOutput() {
					pick = c
					break
				}
			}
			if pick == nil {
				return fmt.Errorf("session %s has no terminal output to write (channels: %s)", r.SessionID, channelList(s, false))
			}
		}
		if err := writeAsciicast(stdout, *f.asciicast, pick, query.AsciicastTitle(s, pick), *f.input); err != nil {
			return err
		}
		where := *f.asciicast
		if where == "-" {
			where = "stdout"
		}
		fmt.Fprintf(stderr, "wrote channel %s, %d frames over %s, to %s; channels with terminal output: %s (--channel N)\n",
			pick.Describe(), len(pick.Frames), pick.Duration().Round(time.Millisecond), where, channelList(s, true))
		return nil
	}
	printSSHSession(stdout, s, r)
	if *f.noPlay {
		return nil
	}
	p := &player{sleep: sleep, speed: *f.speed, noWait: *f.noWait, maxIdle: *f.maxIdle}
	for _, c := range s.Channels {
		if (pick != nil && c != pick) || !c.HasOutput() {
			continue
		}
		if stopped, err := p.playTerminal(ctx, stdout, stderr, "channel "+c.Describe(), fmt.Sprintf("channel %d", c.Number), c.Terminal()); stopped || err != nil {
			return err
		}
	}
	return nil
}

// playTerminal plays one recorded terminal under a heading (what it is, and its short
// name for the end line). An interrupted replay (ctx done) resets the terminal and reports
// stopped, without an error.
func (p *player) playTerminal(ctx context.Context, stdout, stderr io.Writer, heading, name string, t query.Terminal) (stopped bool, err error) {
	how := "Ctrl-C stops it; --no-wait prints it at once"
	if p.noWait {
		how = "at once"
	} else if p.speed != 1 {
		how = fmt.Sprintf("%g× speed; Ctrl-C stops it", p.speed)
	}
	fmt.Fprintf(stdout, "\n▶ %s: %s of terminal output (%s)\n", heading, t.Duration().Round(time.Millisecond), how)
	if err := p.play(ctx, stdout, t.Frames); err != nil {
		if ctx.Err() != nil {
			resetTerminal(stdout)
			fmt.Fprintf(stderr, "\nreplay interrupted in %s\n", name)
			return true, nil
		}
		return false, err
	}
	fmt.Fprintf(stdout, "\n■ end of %s\n", name)
	return false, nil
}

// resetTerminal undoes what a replay cut short may have left set on a terminal (the
// alternate screen of a full-screen program, a hidden cursor, colours); not on a file.
func resetTerminal(w io.Writer) {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(f, "\x1b[0m\x1b[?25h\x1b[?1049l")
		}
	}
}

// writeAsciicast writes a recorded terminal (an SSH channel's, a Kubernetes exec's) to
// path as asciicast v2, or to stdout for "-".
func writeAsciicast(stdout io.Writer, path string, c query.Recording, title string, input bool) error {
	opt := query.AsciicastOptions{Title: title, Input: input}
	if path == "-" {
		return query.WriteAsciicast(stdout, c, opt)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := query.WriteAsciicast(out, c, opt); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.Close()
}

// channelList names a session's channels (only those with terminal output, with output).
func channelList(s *query.SSHSession, output bool) string {
	var names []string
	for _, c := range s.Channels {
		if !output || c.HasOutput() {
			names = append(names, c.Describe())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// printSSHSession prints the session and, per channel, what was asked and what happened.
func printSSHSession(w io.Writer, s *query.SSHSession, r *query.Replay) {
	fmt.Fprintf(w, "SSH session %s\n", r.SessionID)
	groups := ""
	if len(s.Identity.Groups) > 0 {
		groups = " (groups " + strings.Join(s.Identity.Groups, ",") + ")"
	}
	fmt.Fprintf(w, "  who:      %s%s\n", who(s.Identity), groups)
	if p := s.Start; p != nil {
		login := p.Login
		if login == "" {
			login = "(not recorded)"
		}
		fmt.Fprintf(w, "  resource: %s, login %s (ssh user %s)\n", s.Resource, login, p.ClientUser)
		fmt.Fprintf(w, "  client:   %s, %s, auth %s, audit %s\n", p.ClientAddr, orNone(p.ApplicationName), orNone(p.AuthMethod), p.AuditMode)
		fmt.Fprintf(w, "  started:  %s\n", s.Started.Local().Format(time.DateTime))
	} else {
		fmt.Fprintf(w, "  resource: %s (the trail has no session.start)\n", s.Resource)
	}
	if s.Terminated != nil {
		t := s.Terminated
		fmt.Fprintf(w, "  ended by the gateway: %s %s %s\n", t.Cause, t.Revocation, t.Reason)
	}
	if e := s.End; e != nil {
		fmt.Fprintf(w, "  ended:    %s, %s, %d request(s) decided (%d denied, %d held for approval), %d bytes in, %d bytes out%s\n",
			s.Ended.Local().Format(time.DateTime), e.Reason, e.Statements, e.Denied, e.Held, e.BytesIn, e.BytesOut, errSuffix(e.Error))
	} else {
		fmt.Fprintf(w, "  ended:    not in the trail (open, or cut)\n")
	}
	for _, c := range s.Channels {
		fmt.Fprintf(w, "channel %s, opened %s\n", c.Describe(), c.Opened.Local().Format("15:04:05.000000"))
		for _, q := range c.Requests {
			fmt.Fprintf(w, "  %s  #%d request %d %s: %s\n", q.Time.Local().Format("15:04:05.000000"), q.Seq, q.Request.QueryID, requestLine(q), decisionLine(&q.Verdict))
		}
		for _, fl := range c.Files {
			state := "complete"
			if !fl.Complete {
				state = "cut off"
			}
			hash := "sha256 " + fl.Sha256
			if !fl.Sequential {
				hash += " (of the bytes as they passed, not in file order)"
			}
			fmt.Fprintf(w, "  file %s %s (%s): %d bytes, %s, %s\n", fl.Direction, fl.Path, fl.Via, fl.Size, hash, state)
		}
		if x := c.Exit; x != nil {
			how := x.Ended
			switch x.Ended {
			case "exited":
				how = fmt.Sprintf("exited with status %d", x.ExitStatus)
			case "signal":
				how = "killed by signal " + x.ExitSignal
			case "closed":
				how = "channel closed without an exit status"
			}
			fmt.Fprintf(w, "  exit: %s after %s, %d bytes in, %d bytes out\n", how, (time.Duration(x.DurationUS) * time.Microsecond).Round(time.Millisecond), x.BytesIn, x.BytesOut)
		}
		if len(c.Frames) > 0 {
			var notes []string
			if c.Masked > 0 {
				notes = append(notes, fmt.Sprintf("%d value(s) masked", c.Masked))
			}
			if c.HiddenInput > 0 {
				notes = append(notes, fmt.Sprintf("%d typed byte(s) not echoed, recorded as *", c.HiddenInput))
			}
			if c.Dropped > 0 {
				notes = append(notes, fmt.Sprintf("%d byte(s) past the recording limit not recorded", c.Dropped))
			}
			extra := ""
			if len(notes) > 0 {
				extra = "; " + strings.Join(notes, ", ")
			}
			fmt.Fprintf(w, "  terminal: %d frame(s) over %s%s\n", len(c.Frames), c.Duration().Round(time.Millisecond), extra)
		}
	}
	if !r.ChainOK {
		fmt.Fprintf(w, "WARNING: hash chain broken: %s\n", r.ChainError)
	} else {
		fmt.Fprintf(w, "hash chain intact (%d events)\n", len(r.Events))
	}
}

// requestLine is a request as people read it: `exec "uptime"`, `sftp write /tmp/x`.
func requestLine(q *query.SSHRequest) string {
	p := &q.Request
	switch p.Request {
	case "exec":
		s := "exec " + strconv.Quote(p.Command)
		if p.Truncated {
			s += " (truncated)"
		}
		return s
	}
	return q.Text()
}

// decisionLine is a request's decision and, when it was held, what became of it.
func decisionLine(q *query.Verdict) string {
	d := q.Decision
	if d == nil {
		return "no decision recorded"
	}
	s := strings.ToUpper(d.Effect) + " by " + ruleName(d.Policy, d.Rule)
	if d.Reason != "" {
		s += ": " + d.Reason
	}
	switch q.Outcome {
	case "approved":
		s += " → approved by " + orNone(strings.Join(q.Approvers, ", "))
	case "approval_denied":
		s += " → approval denied by " + q.DeniedBy
		if q.DenialReason != "" {
			s += ": " + q.DenialReason
		}
	case "approval_expired":
		s += " → approval expired undecided"
	case "approval_cancelled":
		s += " → approval cancelled (the client gave up)"
	case "approval_pending":
		s += " → approval pending"
	case "held_no_outcome":
		s += " → held, no approval of its own in the trail"
	}
	if q.Approval != "" {
		s += " (approval " + q.Approval + ")"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
