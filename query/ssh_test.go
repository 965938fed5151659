package query

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// sshStart is when the fabricated SSH session starts.
var sshStart = time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)

// sshTerminal is a shell's output as a client saw it: escapes, CR LF, multi-byte UTF-8,
// bytes JSON escapes, stdout and stderr interleaved.
func sshTerminal() string {
	var b strings.Builder
	b.WriteString("\x1b[?2004hdeploy@web-1:~$ ")
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"ok", "é", "日本語", "\t", "\"quoted\"", "back\\slash", "<tag>&amp;", "\x1b[31mred\x1b[0m", "\r\n", "✓", "\x07"}
	for i := 0; i < 400; i++ {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	b.WriteString("\r\nlogout\r\n")
	return b.String()
}

// framesOf cuts out (a channel's output) into o and e frames at rune boundaries, one every
// 1-40 ms, with input typed between them recorded late (its frame arrives after output
// that came after it) and a resize.
func framesOf(out string) (frames []schemas.TermFrame) {
	r := rand.New(rand.NewPCG(3, 4))
	var t uint64
	for len(out) > 0 {
		n := min(len(out), 1+r.IntN(30))
		for n < len(out) && !utf8Start(out[n]) {
			n++
		}
		t += uint64(1000 + r.IntN(40000))
		code := "o"
		if r.IntN(5) == 0 {
			code = "e"
		}
		frames = append(frames, schemas.TermFrame{TUS: t, Code: code, Data: out[:n]})
		out = out[n:]
		if r.IntN(4) == 0 {
			frames = append(frames, schemas.TermFrame{TUS: t - 500, Code: "i", Data: "k"}) // typed before the output above
		}
		if len(frames) == 20 {
			frames = append(frames, schemas.TermFrame{TUS: t, Code: "r", Data: "120x40"})
		}
	}
	// One output frame stamped earlier than the one before it (a clock step): it keeps its
	// place in the stream.
	frames[10].TUS = frames[8].TUS - 1
	return frames
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// sshEvents is an SSH session's trail, chained: a shell with a pty (channel 0); an exec
// held for approval and approved (1); an exec denied (2); sftp with an upload allowed and a
// read denied (3); an exec killed by a signal (4).
func sshEvents(t *testing.T, session string) []schemas.Event {
	id := schemas.Identity{Subject: "u-alice", Name: "alice@example.com", Issuer: "iss", Groups: []string{"ops"}, Kind: "human"}
	var out []schemas.Event
	prev := ""
	at := sshStart
	add := func(d time.Duration, p schemas.Payload) {
		at = at.Add(d)
		e := schemas.Event{ID: session + "-" + itoa(uint64(len(out)+1)), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: at,
			SessionID: session, Seq: uint64(len(out) + 1), Identity: id, Resource: "web-1", PolicyRevision: 3, PrevHash: prev, Payload: p.AppendJSON(nil)}
		h, err := e.ComputeHash()
		require.NoError(t, err)
		e.Hash, prev = h, h
		out = append(out, e)
	}
	var qid uint64
	req := func(ch uint32, r schemas.SshRequest, d schemas.Decision) uint64 {
		qid++
		r.QueryID, r.Channel = qid, ch
		if r.ChannelType == "" {
			r.ChannelType = "session"
		}
		add(time.Millisecond, &r)
		d.QueryID = qid
		add(0, &d)
		return qid
	}
	allow := schemas.Decision{Effect: "allow", Policy: "ops", Rule: "ops-on-web"}
	add(0, &schemas.SessionStart{Labels: []string{"env=production"}, Protocol: "ssh", ClientAddr: "10.0.0.5:51234", ClientUser: "web-1+deploy",
		ApplicationName: "SSH-2.0-OpenSSH_9.6", Login: "deploy", AuthMethod: "token", AuditMode: "strict"})
	// Channel 0: a shell.
	req(0, schemas.SshRequest{Request: "open"}, allow)
	req(0, schemas.SshRequest{Request: "env", EnvName: "LANG"}, allow)
	req(0, schemas.SshRequest{Request: "pty-req", Term: "xterm-256color", Cols: 100, Rows: 30}, allow)
	shell := req(0, schemas.SshRequest{Request: "shell"}, allow)
	frames := framesOf(sshTerminal())
	for i := 0; i*25 < len(frames); i++ {
		io := &schemas.SshIo{QueryID: shell, Channel: 0, Chunk: uint32(i), Frames: frames[i*25 : min(len(frames), (i+1)*25)]}
		if i == 1 {
			io.Masked = []schemas.MaskedCount{{Name: "terminal", By: "card", Method: "redact", Count: 2}}
			io.HiddenInput = 8
		}
		add(time.Millisecond, io)
	}
	add(time.Second, &schemas.SshExit{QueryID: shell, Channel: 0, Ended: "exited", BytesIn: 120, BytesOut: uint64(len(sshTerminal())), DurationUS: 9_000_000})
	// Channel 1: an exec held and approved.
	req(1, schemas.SshRequest{Request: "open"}, allow)
	held := req(1, schemas.SshRequest{Request: "exec", Command: `sudo systemctl restart nginx && echo "<done>"`},
		schemas.Decision{Effect: "require_approval", Policy: "ops", Rule: "sudo-needs-approval", Reason: "sudo on production needs a second pair of eyes"})
	add(0, &schemas.ApprovalRequested{ApprovalID: "ap-1", Kind: "statement", QueryID: held, Mode: "hold", Approvers: []string{"sre"}, Required: 1, Deadline: at.Add(time.Hour)})
	add(7*time.Second, &schemas.ApprovalDecided{ApprovalID: "ap-1", QueryID: held, Decision: "approve", By: "bob@example.com", Via: "slack", Outcome: "approved", Approvals: 1})
	add(time.Millisecond, &schemas.SshIo{QueryID: held, Channel: 1, Frames: []schemas.TermFrame{{TUS: 2000, Code: "o", Data: "<done>\n"}}})
	add(time.Millisecond, &schemas.SshExit{QueryID: held, Channel: 1, Ended: "exited", ExitStatus: 0, BytesOut: 7, DurationUS: 7_100_000})
	// Channel 2: an exec denied.
	req(2, schemas.SshRequest{Request: "open"}, allow)
	req(2, schemas.SshRequest{Request: "exec", Command: "rm -rf /var/lib/app"},
		schemas.Decision{Effect: "deny", Policy: "ops", Rule: "no-rm-rf", Reason: "no recursive deletes on production", Fingerprint: "fp-rm"})
	add(time.Millisecond, &schemas.SshExit{QueryID: qid, Channel: 2, Ended: "closed"})
	// Channel 3: sftp.
	req(3, schemas.SshRequest{Request: "open"}, allow)
	sftp := req(3, schemas.SshRequest{Request: "subsystem", Subsystem: "sftp"}, allow)
	req(3, schemas.SshRequest{Request: "sftp", SftpOp: "write", Path: "/srv/app/config.yml"}, allow)
	add(time.Millisecond, &schemas.SshFile{QueryID: qid, Channel: 3, Via: "sftp", Path: "/srv/app/config.yml", Direction: "upload", Size: 1234,
		Sha256: strings.Repeat("ab", 32), Sequential: true, Complete: true})
	req(3, schemas.SshRequest{Request: "sftp", SftpOp: "read", Path: "/etc/shadow"},
		schemas.Decision{Effect: "deny", Policy: "ops", Rule: "no-secrets", Reason: "not the host's secrets"})
	req(3, schemas.SshRequest{Request: "sftp", SftpOp: "rename", Path: "/srv/a", Target: "/srv/b"}, allow)
	add(time.Millisecond, &schemas.SshExit{QueryID: sftp, Channel: 3, Ended: "closed", BytesIn: 1300, BytesOut: 90})
	// Channel 4: forwarding, and an exec killed.
	req(4, schemas.SshRequest{Request: "open", ChannelType: "direct-tcpip", Host: "db.internal", Port: 5432}, allow)
	req(5, schemas.SshRequest{Request: "open"}, allow)
	top := req(5, schemas.SshRequest{Request: "exec", Command: "top -b"}, allow)
	add(time.Millisecond, &schemas.SshExit{QueryID: top, Channel: 5, Ended: "signal", ExitSignal: "KILL", DurationUS: 1000})
	add(time.Second, &schemas.SessionEnd{Reason: "client_closed", Statements: qid, Denied: 2, Held: 1, DurationUS: 20_000_000, BytesIn: 2000, BytesOut: 9000})
	return out
}

// The session is arranged per channel: requests with their decisions and outcomes, the
// approver, exits, files, terminal frames in play order with the output byte for byte.
func TestSSHSessionOfArrangesTheTrail(t *testing.T) {
	events := sshEvents(t, "ssh-1")
	require.True(t, IsSSH(events))
	require.False(t, IsSSH(events[len(events)-1:]), "a session.end alone does not say")
	s := SSHSessionOf(events)
	require.Equal(t, "ssh-1", s.ID)
	require.Equal(t, "deploy", s.Start.Login)
	require.Equal(t, "client_closed", s.End.Reason)
	require.Len(t, s.Channels, 6)

	shell := s.Channels[0]
	require.Equal(t, "0 (shell, xterm-256color 100x30)", shell.Describe())
	require.Equal(t, []string{"open session", "env LANG", "pty-req xterm-256color 100x30", "shell"}, texts(shell.Requests))
	require.Equal(t, "exited", shell.Exit.Ended)
	require.Equal(t, uint64(2), shell.Masked)
	require.Equal(t, uint64(8), shell.HiddenInput)
	require.Equal(t, sshTerminal(), string(shell.Output()), "the output replayed is the output sent, byte for byte")
	for i := 1; i < len(shell.Frames); i++ {
		require.LessOrEqual(t, shell.Frames[i-1].TUS, shell.Frames[i].TUS, "frame %d", i)
	}
	var inputs int
	for _, f := range shell.Frames {
		if f.Code == "i" {
			inputs++
		}
	}
	require.Positive(t, inputs)

	exec := s.Channels[1]
	require.Equal(t, `1 (exec "sudo systemctl restart nginx && echo \"<done>\"")`, exec.Describe())
	held := exec.Requests[1]
	require.Equal(t, "approved", held.Outcome)
	require.Equal(t, []string{"bob@example.com"}, held.Approvers)
	require.Equal(t, "ap-1", held.Approval)
	require.Equal(t, "<done>\n", string(exec.Output()))

	denied := s.Channels[2].Requests[1]
	require.Equal(t, "denied", denied.Outcome)
	require.Equal(t, "no recursive deletes on production", denied.Decision.Reason)
	require.Equal(t, "closed", s.Channels[2].Exit.Ended)
	require.False(t, s.Channels[2].HasOutput())

	sftp := s.Channels[3]
	require.Equal(t, []string{"open session", "subsystem sftp", "sftp write /srv/app/config.yml", "sftp read /etc/shadow", "sftp rename /srv/a /srv/b"}, texts(sftp.Requests))
	require.Equal(t, []string{"allowed", "allowed", "allowed", "denied", "allowed"}, outcomes(sftp.Requests))
	require.Len(t, sftp.Files, 1)
	require.Equal(t, "upload", sftp.Files[0].Direction)

	require.Equal(t, []string{"open direct-tcpip db.internal:5432"}, texts(s.Channels[4].Requests))
	require.Equal(t, "KILL", s.Channels[5].Exit.ExitSignal)
}

func texts(rs []*SSHRequest) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Text())
	}
	return out
}

func outcomes(rs []*SSHRequest) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Outcome)
	}
	return out
}

// Each outcome of a held request is named as the evidence reports name it.
func TestSSHRequestOutcomes(t *testing.T) {
	held := &schemas.Decision{Effect: "require_approval"}
	for _, c := range []struct {
		r    Verdict
		want string
	}{
		{Verdict{}, "no_decision"},
		{Verdict{Decision: &schemas.Decision{Effect: "mask"}}, "masked"},
		{Verdict{Decision: held, requested: true, approved: true}, "approved"},
		{Verdict{Decision: held, requested: true, denied: true}, "approval_denied"},
		{Verdict{Decision: held, requested: true, expired: true}, "approval_expired"},
		{Verdict{Decision: held, requested: true, cancelled: true}, "approval_cancelled"},
		{Verdict{Decision: held, requested: true}, "approval_pending"},
		{Verdict{Decision: held}, "held_no_outcome"},
	} {
		require.Equal(t, c.want, outcome(&c.r))
	}
}

// Input recorded late goes where its time puts it; output keeps its recorded order even
// when a time goes back.
func TestPlayOrder(t *testing.T) {
	got := PlayOrder([]schemas.TermFrame{
		{TUS: 10, Code: "o", Data: "a"}, {TUS: 30, Code: "o", Data: "b"}, {TUS: 20, Code: "i", Data: "x"},
		{TUS: 25, Code: "o", Data: "c"}, {TUS: 40, Code: "r", Data: "80x24"}, {TUS: 5, Code: "i", Data: "y"},
	})
	require.Equal(t, []schemas.TermFrame{
		{TUS: 5, Code: "i", Data: "y"}, {TUS: 10, Code: "o", Data: "a"}, {TUS: 20, Code: "i", Data: "x"},
		{TUS: 30, Code: "o", Data: "b"}, {TUS: 30, Code: "o", Data: "c"}, {TUS: 40, Code: "r", Data: "80x24"},
	}, got)
}

// checkAsciicast reads an asciicast v2 file line by line: a header with the keys the format
// asks for, then events that are JSON arrays [seconds, code, data] with times that never go
// back. It returns the header and the events.
func checkAsciicast(t *testing.T, b []byte) (map[string]any, [][]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	require.True(t, sc.Scan())
	var header map[string]any
	require.NoError(t, json.Unmarshal(sc.Bytes(), &header), sc.Text())
	require.EqualValues(t, 2, header["version"])
	require.Positive(t, header["width"])
	require.Positive(t, header["height"])
	require.Contains(t, header, "timestamp")
	var events [][]any
	last := -1.0
	for sc.Scan() {
		var ev []any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), sc.Text())
		require.Len(t, ev, 3, sc.Text())
		at, ok := ev[0].(float64)
		require.True(t, ok, sc.Text())
		require.GreaterOrEqual(t, at, last, "times never go back: %s", sc.Text())
		last = at
		require.Contains(t, []any{"o", "i", "r"}, ev[1])
		_, ok = ev[2].(string)
		require.True(t, ok, sc.Text())
		events = append(events, ev)
	}
	require.NoError(t, sc.Err())
	require.True(t, bytes.HasSuffix(b, []byte("\n")))
	return header, events
}

// The asciicast file of a channel: the header from its pty-req, its output as "o" events
// whose data put together is the output sent, byte for byte; input only when asked for;
// resizes as "r".
func TestWriteAsciicast(t *testing.T) {
	s := SSHSessionOf(sshEvents(t, "ssh-1"))
	shell := s.Channels[0]
	for _, input := range []bool{false, true} {
		var b bytes.Buffer
		require.NoError(t, WriteAsciicast(&b, shell, AsciicastOptions{Title: AsciicastTitle(s, shell), Input: input}))
		header, events := checkAsciicast(t, b.Bytes())
		require.EqualValues(t, 100, header["width"])
		require.EqualValues(t, 30, header["height"])
		require.EqualValues(t, shell.Opened.Unix(), header["timestamp"])
		require.Equal(t, map[string]any{"TERM": "xterm-256color"}, header["env"])
		require.Equal(t, "alice@example.com on web-1 as deploy, channel 0 (shell, xterm-256color 100x30), 2026-12-05T09:00:00Z", header["title"])
		var out strings.Builder
		codes := map[string]int{}
		for _, ev := range events {
			codes[ev[1].(string)]++
			if ev[1] == "o" {
				out.WriteString(ev[2].(string))
			}
			if ev[1] == "r" {
				require.Equal(t, "120x40", ev[2])
			}
		}
		require.Equal(t, sshTerminal(), out.String())
		require.Equal(t, 1, codes["r"])
		if input {
			require.Positive(t, codes["i"])
		} else {
			require.Zero(t, codes["i"])
		}
	}
	// Without a pty: asciinema's 80x24, no TERM.
	var b bytes.Buffer
	require.NoError(t, WriteAsciicast(&b, s.Channels[1], AsciicastOptions{}))
	header, events := checkAsciicast(t, b.Bytes())
	require.EqualValues(t, 80, header["width"])
	require.NotContains(t, header, "env")
	require.Equal(t, [][]any{{0.002, "o", "<done>\n"}}, events)
	require.Contains(t, b.String(), "\n[0.002000,\"o\",")
}
