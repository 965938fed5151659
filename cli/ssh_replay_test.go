package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

const testToken = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhdWRpdG9yIn0.sig"

// terminal is what the shell of the fixture sent, cut into frames below.
const terminal = "deploy@web-1:~$ ls\r\n\x1b[34mapp\x1b[0m  café  \"x\"\r\nwarn: 日本\r\ndeploy@web-1:~$ exit\r\n"

// sshReplay is an SSH session as the API returns it: a shell with a pty and typed input
// recorded late (channel 0), an exec approved (1), an exec denied (2), an sftp upload (3).
func sshReplay() *query.Replay {
	id := schemas.Identity{Subject: "u-alice", Name: "alice@example.com", Issuer: "iss", Groups: []string{"ops"}, Kind: "human"}
	at := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	var events []schemas.Event
	add := func(p schemas.Payload) {
		at = at.Add(time.Millisecond)
		events = append(events, schemas.Event{ID: "e", Type: p.EventType(), Time: at, SessionID: "ssh-1", Seq: uint64(len(events) + 1),
			Identity: id, Resource: "web-1", Payload: p.AppendJSON(nil)})
	}
	allow := func(q uint64) { add(&schemas.Decision{QueryID: q, Effect: "allow", Policy: "ops", Rule: "ops-on-web"}) }
	add(&schemas.SessionStart{Protocol: "ssh", ClientAddr: "10.0.0.5:51234", ClientUser: "web-1+deploy", ApplicationName: "SSH-2.0-OpenSSH_9.6",
		Login: "deploy", AuthMethod: "token", AuditMode: "strict"})
	add(&schemas.SshRequest{QueryID: 1, Channel: 0, ChannelType: "session", Request: "open"})
	allow(1)
	add(&schemas.SshRequest{QueryID: 2, Channel: 0, ChannelType: "session", Request: "pty-req", Term: "xterm", Cols: 90, Rows: 20})
	allow(2)
	add(&schemas.SshRequest{QueryID: 3, Channel: 0, ChannelType: "session", Request: "shell"})
	allow(3)
	add(&schemas.SshIo{QueryID: 3, Channel: 0, Chunk: 0, Frames: []schemas.TermFrame{
		{TUS: 100_000, Code: "o", Data: "deploy@web-1:~$ "}, {TUS: 1_100_000, Code: "o", Data: "l"}, {TUS: 1_200_000, Code: "o", Data: "s\r\n"},
		{TUS: 1_000_000, Code: "i", Data: "ls\r"}, // recorded after the echo it caused
	}})
	add(&schemas.SshIo{QueryID: 3, Channel: 0, Chunk: 1, Frames: []schemas.TermFrame{
		{TUS: 1_300_000, Code: "o", Data: "\x1b[34mapp\x1b[0m  café  \"x\"\r\n"}, {TUS: 1_300_000, Code: "e", Data: "warn: 日本\r\n"},
		{TUS: 2_000_000, Code: "r", Data: "100x30"}, {TUS: 31_300_000, Code: "o", Data: "deploy@web-1:~$ exit\r\n"},
	}})
	add(&schemas.SshExit{QueryID: 3, Channel: 0, Ended: "exited", BytesIn: 8, BytesOut: uint64(len(terminal)), DurationUS: 31_400_000})
	add(&schemas.SshRequest{QueryID: 4, Channel: 1, ChannelType: "session", Request: "open"})
	allow(4)
	add(&schemas.SshRequest{QueryID: 5, Channel: 1, ChannelType: "session", Request: "exec", Command: "sudo systemctl restart nginx"})
	add(&schemas.Decision{QueryID: 5, Effect: "require_approval", Policy: "ops", Rule: "sudo", Reason: "sudo needs a second pair of eyes"})
	add(&schemas.ApprovalRequested{ApprovalID: "ap-1", Kind: "statement", QueryID: 5, Mode: "hold"})
	add(&schemas.ApprovalDecided{ApprovalID: "ap-1", QueryID: 5, Decision: "approve", By: "bob@example.com", Via: "slack", Outcome: "approved", Approvals: 1})
	add(&schemas.SshIo{QueryID: 5, Channel: 1, Frames: []schemas.TermFrame{{TUS: 5000, Code: "o", Data: "restarted\n"}}})
	add(&schemas.SshExit{QueryID: 5, Channel: 1, Ended: "exited", ExitStatus: 3, BytesOut: 10, DurationUS: 9_000_000})
	add(&schemas.SshRequest{QueryID: 6, Channel: 2, ChannelType: "session", Request: "open"})
	allow(6)
	add(&schemas.SshRequest{QueryID: 7, Channel: 2, ChannelType: "session", Request: "exec", Command: "rm -rf /srv"})
	add(&schemas.Decision{QueryID: 7, Effect: "deny", Policy: "ops", Rule: "no-rm", Reason: "no recursive deletes"})
	add(&schemas.SshRequest{QueryID: 8, Channel: 3, ChannelType: "session", Request: "open"})
	allow(8)
	add(&schemas.SshRequest{QueryID: 9, Channel: 3, ChannelType: "session", Request: "subsystem", Subsystem: "sftp"})
	allow(9)
	add(&schemas.SshRequest{QueryID: 10, Channel: 3, ChannelType: "session", Request: "sftp", SftpOp: "write", Path: "/srv/app.conf"})
	allow(10)
	add(&schemas.SshFile{QueryID: 10, Channel: 3, Via: "sftp", Path: "/srv/app.conf", Direction: "upload", Size: 42, Sha256: "c0ffee", Sequential: true, Complete: true})
	add(&schemas.SessionEnd{Reason: "client_closed", Statements: 10, Denied: 1, Held: 1, BytesIn: 100, BytesOut: 200})
	return &query.Replay{SessionID: "ssh-1", Events: events, ChainOK: true}
}

// serve answers the replay of r's session as the API would.
func serve(t *testing.T, r *query.Replay) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/api/v1/sessions/"+r.SessionID {
			http.Error(w, `{"message":"no such session"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The replay of an SSH session prints who, where, as whom, how; per channel its requests
// with their decisions (the reason of a denial, the approver of an approval), the exits and
// the files; then plays the terminal: exactly the bytes the client was sent.
func TestSSHReplayPrintsTheSessionAndPlaysItsTerminal(t *testing.T) {
	url := serve(t, sshReplay())
	code, out, errOut := run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--no-wait")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"SSH session ssh-1\n",
		"  who:      alice@example.com [sub u-alice] (groups ops)\n",
		"  resource: web-1, login deploy (ssh user web-1+deploy)\n",
		"  client:   10.0.0.5:51234, SSH-2.0-OpenSSH_9.6, auth token, audit strict\n",
		"client_closed, 10 request(s) decided (1 denied, 1 held for approval)",
		"channel 0 (shell, xterm 90x20), opened ",
		" request 2 pty-req xterm 90x20: ALLOW by ops/ops-on-web\n",
		"  exit: exited with status 0 after 31.4s",
		"  terminal: 8 frame(s) over 31.3s\n",
		`channel 1 (exec "sudo systemctl restart nginx")`,
		` request 5 exec "sudo systemctl restart nginx": REQUIRE_APPROVAL by ops/sudo: sudo needs a second pair of eyes → approved by bob@example.com (approval ap-1)` + "\n",
		"  exit: exited with status 3 after 9s",
		` request 7 exec "rm -rf /srv": DENY by ops/no-rm: no recursive deletes` + "\n",
		" request 10 sftp write /srv/app.conf: ALLOW by ops/ops-on-web\n",
		"  file upload /srv/app.conf (sftp): 42 bytes, sha256 c0ffee, complete\n",
		"hash chain intact (",
		"▶ channel 0 (shell, xterm 90x20): 31.3s of terminal output (at once)\n",
	} {
		require.Contains(t, out, want)
	}
	played := strings.SplitN(strings.SplitN(out, "(at once)\n", 2)[1], "\n■ end of channel 0\n", 2)[0]
	require.Equal(t, terminal, played, "the terminal is played byte for byte")
	require.Contains(t, out, "(at once)\nrestarted\n\n■ end of channel 1\n")
	require.NotContains(t, out, "▶ channel 2", "a channel without output is not played")

	// --no-play: the session alone; --channel: one channel's terminal.
	_, out, _ = run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--no-play")
	require.NotContains(t, out, "▶")
	_, out, _ = run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--no-wait", "--channel", "1")
	require.Contains(t, out, "▶ channel 1")
	require.NotContains(t, out, "▶ channel 0")
}

// --asciicast writes one channel (the first with output, or --channel N) as asciicast v2,
// checked line by line, and says which channels there are.
func TestSSHReplayWritesAsciicast(t *testing.T) {
	url := serve(t, sshReplay())
	dir := t.TempDir()
	file := filepath.Join(dir, "s.cast")
	code, out, errOut := run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--asciicast", file)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.Contains(t, errOut, "wrote channel 0 (shell, xterm 90x20), 8 frames over 31.3s, to "+file+
		`; channels with terminal output: 0 (shell, xterm 90x20), 1 (exec "sudo systemctl restart nginx") (--channel N)`)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	lines := castLines(t, b)
	require.Equal(t, map[string]any{"version": 2.0, "width": 90.0, "height": 20.0, "timestamp": 1796461200.0, "env": map[string]any{"TERM": "xterm"},
		"title": "alice@example.com on web-1 as deploy, channel 0 (shell, xterm 90x20), 2026-12-05T09:00:00Z"}, lines[0])
	var stream strings.Builder
	for _, l := range lines[1:] {
		ev := l.([]any)
		require.NotEqual(t, "i", ev[1], "input only with --input")
		if ev[1] == "o" {
			stream.WriteString(ev[2].(string))
		}
	}
	require.Equal(t, terminal, stream.String())
	require.Equal(t, []any{2.0, "r", "100x30"}, lines[len(lines)-2])

	// --input: the keystrokes too, where their time puts them (before the echo).
	code, out, errOut = run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--asciicast", "-", "--input")
	require.Equal(t, 0, code, errOut)
	lines = castLines(t, []byte(out))
	require.Equal(t, []any{1.0, "i", "ls\r"}, lines[2])
	require.Equal(t, []any{1.1, "o", "l"}, lines[3])

	code, out, errOut = run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--asciicast", "-", "--channel", "1")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, []any{0.005, "o", "restarted\n"}, castLines(t, []byte(out))[1])

	code, _, errOut = run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--asciicast", file, "--channel", "9")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `session ssh-1 has no channel 9; it has 0 (shell, xterm 90x20), 1 (exec "sudo systemctl restart nginx"), 2 (exec "rm -rf /srv"), 3 (subsystem sftp)`)
	code, _, errOut = run("sessions", "replay", "ssh-1", "--url", url, "--token", testToken, "--asciicast", file, "--channel", "2")
	require.Equal(t, 0, code, errOut, "a channel without output makes a file without events")
}

// castLines checks an asciicast v2 file line by line (each line JSON, the header's keys,
// events [time, code, data] with times that never go back) and returns its lines.
func castLines(t *testing.T, b []byte) []any {
	t.Helper()
	var out []any
	sc := bufio.NewScanner(bytes.NewReader(b))
	last := 0.0
	for sc.Scan() {
		if len(out) == 0 {
			var h map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &h), sc.Text())
			for _, k := range []string{"version", "width", "height", "timestamp"} {
				require.Contains(t, h, k)
			}
			out = append(out, h)
			continue
		}
		var ev []any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), sc.Text())
		require.Len(t, ev, 3)
		require.GreaterOrEqual(t, ev[0].(float64), last)
		last = ev[0].(float64)
		out = append(out, ev)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out)
	return out
}

// The SSH flags are refused, plainly, for a PostgreSQL session, whose replay is unchanged.
func TestSSHFlagsOnAPostgresSession(t *testing.T) {
	r := &query.Replay{SessionID: "pg-1", ChainOK: true, Events: []schemas.Event{{ID: "e", Type: schemas.TypeSessionStart, SessionID: "pg-1", Seq: 1,
		Resource: "demo", Identity: schemas.Identity{Subject: "svc"}, Payload: (&schemas.SessionStart{Protocol: "postgres", ClientAddr: "127.0.0.1:1"}).AppendJSON(nil)}}}
	url := serve(t, r)
	code, _, errOut := run("sessions", "replay", "pg-1", "--url", url, "--token", testToken, "--asciicast", "x.cast")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--asciicast is for SSH and Kubernetes sessions; session pg-1 is not one")
	code, out, errOut := run("sessions", "replay", "pg-1", "--url", url, "--token", testToken)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "#1 session start: svc () → demo from 127.0.0.1:1")
	code, _, errOut = run("sessions", "replay", "pg-1", "--url", url, "--token", testToken, "--speed", "0")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--speed must be above 0")
}

// sleeps is a sleeper that records what it was asked to wait, and cancels the playback
// at its stop-th call, as Ctrl-C would.
type sleeps struct {
	waited []time.Duration
	stop   int
	cancel context.CancelFunc
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.waited = append(s.waited, d)
	if len(s.waited) == s.stop {
		s.cancel()
	}
	return ctx.Err()
}

// Playback waits between frames as recorded (divided by --speed, capped by --max-idle,
// none with --no-wait), writes the frames' data unchanged, and stops when interrupted;
// no clock is read.
func TestPlayerWaitsAsRecordedAndStops(t *testing.T) {
	frames := query.SSHSessionOf(sshReplay().Events).Channels[0].Frames
	for _, c := range []struct {
		p    player
		want []time.Duration
	}{
		{player{speed: 1}, []time.Duration{100 * time.Millisecond, time.Second, 100 * time.Millisecond, 100 * time.Millisecond, 30 * time.Second}},
		{player{speed: 4}, []time.Duration{25 * time.Millisecond, 250 * time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond, 7500 * time.Millisecond}},
		{player{speed: 1, maxIdle: 2 * time.Second}, []time.Duration{100 * time.Millisecond, time.Second, 100 * time.Millisecond, 100 * time.Millisecond, 2 * time.Second}},
		{player{speed: 1, noWait: true}, nil},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		s := &sleeps{cancel: cancel}
		c.p.sleep = s.sleep
		var out bytes.Buffer
		require.NoError(t, c.p.play(ctx, &out, frames))
		require.Equal(t, c.want, s.waited)
		require.Equal(t, terminal, out.String())
		cancel()
	}

	// Interrupted at the third pause: what came before it was written, then it stops.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &sleeps{stop: 3, cancel: cancel}
	var out bytes.Buffer
	p := player{speed: 1, sleep: s.sleep}
	require.ErrorIs(t, p.play(ctx, &out, frames), context.Canceled)
	require.Equal(t, "deploy@web-1:~$ l", out.String())

	// Through the command: the session is printed, the replay says where it stopped.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	s = &sleeps{stop: 2, cancel: cancel}
	speed, dur, no, empty := 1.0, time.Duration(0), false, ""
	var stdout, stderr bytes.Buffer
	err := replaySSH(ctx, &stdout, &stderr, sshReplay(), &sshReplayFlags{speed: &speed, noWait: &no, noPlay: &no, maxIdle: &dur, channel: &empty, asciicast: &empty, input: &no}, s.sleep)
	require.NoError(t, err)
	require.Contains(t, stdout.String(), "▶ channel 0")
	require.True(t, strings.HasSuffix(stdout.String(), "(Ctrl-C stops it; --no-wait prints it at once)\ndeploy@web-1:~$ "), stdout.String())
	require.Equal(t, "\nreplay interrupted in channel 0\n", stderr.String())
}
