package scp_test

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/proxy/ssh/scp"
	"github.com/stretchr/testify/require"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// step is one message of a conversation: from the source or the sink.
type step struct {
	source bool
	data   string
}

func src(s string) step  { return step{source: true, data: s} }
func sink(s string) step { return step{data: s} }

// convo drives a Stream with the steps in random pieces, the source being
// the client for uploads and the server for downloads.
type convo struct {
	t                  *testing.T
	s                  *scp.Stream
	cmd                scp.Command
	toServer, toClient []byte
	replies            []byte
	files              []scp.File
}

func newConvo(t *testing.T, cmd string, limits scp.Limits, decide scp.DecideFunc) *convo {
	c, ok := scp.ParseCommand(cmd)
	require.True(t, ok)
	return &convo{t: t, s: scp.NewStream(c, limits, decide), cmd: c}
}

func (c *convo) feed(r *rand.Rand, st step, max int) error {
	b := []byte(st.data)
	for len(b) > 0 {
		n := min(len(b), 1+r.IntN(max))
		var err error
		if st.source == (c.cmd.Direction == scp.Upload) {
			var fwd, rep []byte
			var files []scp.File
			fwd, rep, files, err = c.s.FromClient(b[:n])
			c.toServer = append(c.toServer, fwd...)
			c.replies = append(c.replies, rep...)
			c.files = append(c.files, files...)
		} else {
			var fwd []byte
			var files []scp.File
			fwd, files, err = c.s.FromServer(b[:n])
			c.toClient = append(c.toClient, fwd...)
			c.files = append(c.files, files...)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (c *convo) run(r *rand.Rand, max int, steps ...step) {
	for _, st := range steps {
		require.NoError(c.t, c.feed(r, st, max))
	}
}

func allow(scp.Op) (bool, string) { return true, "" }

func TestRecursiveUpload(t *testing.T) {
	content := strings.Repeat("0123456789", 1000)
	steps := []step{
		sink("\x00"),
		src("T1796281231 0 1796281231 0\n"), sink("\x00"),
		src("D0755 0 tree\n"), sink("\x00"),
		src("C0644 3 a\n"), sink("\x00"), src("aa\n\x00"), sink("\x00"),
		src("D0700 0 sub\n"), sink("\x00"),
		src("C4755 10000 big\n"), sink("\x00"), src(content + "\x00"), sink("\x00"),
		src("C0644 0 empty\n"), sink("\x00"), src("\x00"), sink("\x00"),
		src("E\n"), sink("\x00"),
		src("E\n"), sink("\x00"),
		src("C0600 2 top\n"), sink("\x01scp: top: Permission denied\n"), // the host refuses: no content
		src("\x01scp: local/x: No such file or directory\n"), // the client's warning, unanswered
		src("C0600 2 top2\n"), sink("\x00"), src("hi\x00"), sink("\x01scp: top2: No space left on device\n"),
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, max := range []int{1, 3, 50, 100000} {
		var asked []scp.Op
		c := newConvo(t, "scp -r -p -d -t /srv/in", scp.Limits{}, func(op scp.Op) (bool, string) {
			asked = append(asked, op)
			return true, ""
		})
		c.run(r, max, steps...)
		var fromClient, fromServer string
		for _, st := range steps {
			if st.source {
				fromClient += st.data
			} else {
				fromServer += st.data
			}
		}
		require.Equal(t, fromClient, string(c.toServer))
		require.Equal(t, fromServer, string(c.toClient))
		require.Empty(t, c.replies)
		require.Equal(t, []scp.File{
			{Path: "/srv/in/tree/a", Direction: "upload", Mode: 0o644, Size: 3, SHA256: sha([]byte("aa\n")), Complete: true},
			{Path: "/srv/in/tree/sub/big", Direction: "upload", Mode: 0o4755, Size: 10000, SHA256: sha([]byte(content)), Complete: true},
			{Path: "/srv/in/tree/sub/empty", Direction: "upload", Mode: 0o644, Size: 0, SHA256: sha(nil), Complete: true},
			{Path: "/srv/in/top2", Direction: "upload", Mode: 0o600, Size: 2, SHA256: sha([]byte("hi"))},
		}, c.files)
		require.Equal(t, []scp.Op{
			{Kind: "mkdir", Path: "/srv/in/tree", Mode: 0o755},
			{Kind: "write", Path: "/srv/in/tree/a", Mode: 0o644},
			{Kind: "mkdir", Path: "/srv/in/tree/sub", Mode: 0o700},
			{Kind: "write", Path: "/srv/in/tree/sub/big", Mode: 0o4755},
			{Kind: "write", Path: "/srv/in/tree/sub/empty", Mode: 0o644},
			{Kind: "write", Path: "/srv/in/top", Mode: 0o600},
			{Kind: "write", Path: "/srv/in/top2", Mode: 0o600},
		}, asked)
		require.Empty(t, c.s.Close())
	}
}

func TestUploadRefused(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	c := newConvo(t, "scp -r -d -t /srv/in", scp.Limits{}, func(op scp.Op) (bool, string) {
		if strings.Contains(op.Path, "secret") {
			return false, ""
		}
		return true, ""
	})
	c.run(r, 4, sink("\x00"), src("C0644 3 secret.txt\n"))
	require.Equal(t, "\x01scp: /srv/in/secret.txt: permission denied by policy\n", string(c.replies))
	require.Empty(t, c.toServer, "the host never hears of it")
	// The client skips the file and goes on; so does the stream.
	c.run(r, 4, src("D0755 0 secret\n"))
	require.Equal(t, "\x01scp: /srv/in/secret: permission denied by policy\n", string(c.replies[len("\x01scp: /srv/in/secret.txt: permission denied by policy\n"):]))
	c.run(r, 4, src("C0644 2 ok\n"), sink("\x00"), src("ok\x00"), sink("\x00"))
	require.Equal(t, "C0644 2 ok\nok\x00", string(c.toServer))
	require.Len(t, c.files, 1)
	require.True(t, c.files[0].Complete)

	// The message from Decide is the client's.
	c = newConvo(t, "scp -t /srv/in/", scp.Limits{}, func(scp.Op) (bool, string) { return false, "ask the owner" })
	c.run(r, 4, sink("\x00"), src("C0644 3 x\n"))
	require.Equal(t, "\x01scp: /srv/in/x: ask the owner\n", string(c.replies))
}

func TestUploadTargetThatMayBeAFile(t *testing.T) {
	// `scp f host:/srv/new` runs `scp -t /srv/new`: the host writes /srv/new
	// itself unless it is an existing directory. Both are decided.
	var asked []string
	c := newConvo(t, "scp -t /srv/new", scp.Limits{}, func(op scp.Op) (bool, string) {
		asked = append(asked, op.Path)
		return op.Path != "/srv/new", ""
	})
	r := rand.New(rand.NewPCG(9, 10))
	c.run(r, 100, sink("\x00"), src("C0644 1 f\n"))
	require.Equal(t, []string{"/srv/new/f", "/srv/new"}, asked)
	require.NotEmpty(t, c.replies)

	c = newConvo(t, "scp -r -t /srv/new", scp.Limits{}, allow)
	c.run(r, 100, sink("\x00"), src("D0755 0 d\n"), sink("\x00"), src("C0644 1 f\n"), sink("\x00"), src("x\x00"), sink("\x00"))
	require.Equal(t, []scp.File{{Path: "/srv/new/d/f", Alt: "/srv/new/f", Direction: "upload", Mode: 0o644, Size: 1, SHA256: sha([]byte("x")), Complete: true}}, c.files)

	for _, target := range []string{".", "~", "/srv/", "/srv/.", "/"} {
		var asked []string
		c := newConvo(t, "scp -t "+target, scp.Limits{}, func(op scp.Op) (bool, string) {
			asked = append(asked, op.Path)
			return true, ""
		})
		c.run(r, 100, sink("\x00"), src("C0644 1 f\n"))
		require.Len(t, asked, 1, target)
	}
}

func TestDownloads(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	tests := []struct {
		cmd   string
		steps []step
		want  []string
	}{
		{"scp -f /etc/hosts", []step{src("C0644 3 hosts\n"), sink("\x00"), src("abc\x00"), sink("\x00")}, []string{"/etc/hosts"}},
		{"scp -f notes.txt", []step{src("C0644 3 notes.txt\n"), sink("\x00"), src("abc\x00"), sink("\x00")}, []string{"notes.txt"}},
		{"scp -f /tmp/*.txt", []step{src("C0644 3 a.txt\n"), sink("\x00"), src("abc\x00"), sink("\x00"), src("C0644 3 b.txt\n"), sink("\x00"), src("abc\x00"), sink("\x00")}, []string{"/tmp/a.txt", "/tmp/b.txt"}},
		{"scp -r -f /srv/tree/", []step{src("D0755 0 tree\n"), sink("\x00"), src("C0644 3 a\n"), sink("\x00"), src("abc\x00"), sink("\x00"), src("E\n"), sink("\x00")}, []string{"/srv/tree/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			c := newConvo(t, tt.cmd, scp.Limits{}, func(scp.Op) (bool, string) {
				t.Fatal("downloads are decided on the command")
				return false, ""
			})
			c.run(r, 3, append([]step{sink("\x00")}, tt.steps...)...)
			var got []string
			for _, f := range c.files {
				require.Equal(t, scp.Download, f.Direction)
				require.Equal(t, sha([]byte("abc")), f.SHA256)
				require.True(t, f.Complete)
				got = append(got, f.Path)
			}
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("cut off", func(t *testing.T) {
		c := newConvo(t, "scp -f /x", scp.Limits{}, nil)
		c.run(r, 3, sink("\x00"), src("C0644 10 x\n"), sink("\x00"), src("abc"))
		files := c.s.Close()
		require.Equal(t, []scp.File{{Path: "/x", Direction: "download", Mode: 0o644, Size: 3, SHA256: sha([]byte("abc"))}}, files)
	})
	t.Run("the source fails reading", func(t *testing.T) {
		c := newConvo(t, "scp -f /x", scp.Limits{}, nil)
		c.run(r, 3, sink("\x00"), src("C0644 3 x\n"), sink("\x00"), src("abc\x01scp: /x: Input/output error\n"), sink("\x00"))
		require.Len(t, c.files, 1)
		require.False(t, c.files[0].Complete)
	})
	t.Run("a fatal error ends it", func(t *testing.T) {
		c := newConvo(t, "scp -f /x", scp.Limits{}, nil)
		c.run(r, 3, sink("\x00"), src("\x02scp: fatal\n"))
		require.ErrorIs(t, c.feed(r, src("C0644 3 x\n"), 3), scp.ErrProtocol)
	})
}

func TestViolations(t *testing.T) {
	long := strings.Repeat("n", 5000)
	tests := []struct {
		name   string
		cmd    string
		limits scp.Limits
		steps  []step
		want   error
		msg    string
	}{
		{name: "slash in a name", cmd: "scp -f /x", steps: []step{src("C0644 1 ../x\n")}, want: scp.ErrProtocol, msg: "single path element"},
		{name: "dot dot", cmd: "scp -r -f /x", steps: []step{src("D0755 0 ..\n")}, want: scp.ErrProtocol},
		{name: "dot", cmd: "scp -r -f /x", steps: []step{src("D0755 0 .\n")}, want: scp.ErrProtocol},
		{name: "absolute name from a client", cmd: "scp -t /x", steps: []step{src("C0644 1 /etc/passwd\n")}, want: scp.ErrProtocol},
		{name: "empty name", cmd: "scp -t /x", steps: []step{src("C0644 1 \n")}, want: scp.ErrProtocol},
		{name: "NUL in a name", cmd: "scp -t /x", steps: []step{src("C0644 1 ok\x00/../../etc\n")}, want: scp.ErrProtocol, msg: "NUL"},
		{name: "bad mode", cmd: "scp -t /x", steps: []step{src("C0648 1 a\n")}, want: scp.ErrProtocol},
		{name: "short mode", cmd: "scp -t /x", steps: []step{src("C644 1 a\n")}, want: scp.ErrProtocol},
		{name: "no size", cmd: "scp -t /x", steps: []step{src("C0644  a\n")}, want: scp.ErrProtocol},
		{name: "negative size", cmd: "scp -t /x", steps: []step{src("C0644 -1 a\n")}, want: scp.ErrProtocol},
		{name: "huge size", cmd: "scp -t /x", steps: []step{src("C0644 99999999999999999999999 a\n")}, want: scp.ErrProtocol},
		{name: "bad times", cmd: "scp -t /x", steps: []step{src("T1 0 x 0\n")}, want: scp.ErrProtocol},
		{name: "E at the top", cmd: "scp -t /x", steps: []step{src("E\n")}, want: scp.ErrProtocol},
		{name: "unknown record", cmd: "scp -t /x", steps: []step{src("X\n")}, want: scp.ErrProtocol},
		{name: "empty line", cmd: "scp -t /x", steps: []step{src("\n")}, want: scp.ErrProtocol},
		{name: "line too long", cmd: "scp -t /x", steps: []step{src("C0644 1 " + long + "\n")}, want: scp.ErrLimit},
		{name: "line too long, no newline yet", cmd: "scp -t /x", steps: []step{src("C0644 1 " + long)}, want: scp.ErrLimit},
		{name: "message too long", cmd: "scp -t /x", steps: []step{src("C0644 1 a\n"), sink("\x01" + long)}, want: scp.ErrLimit},
		{name: "too deep", cmd: "scp -r -t /x", limits: scp.Limits{MaxDepth: 1}, steps: []step{src("D0755 0 a\n"), sink("\x00"), src("D0755 0 b\n")}, want: scp.ErrLimit},
		// Content sent before the host accepted the file could be read by
		// the host as records: never let it through.
		{name: "content before the answer", cmd: "scp -t /x", steps: []step{src("C0644 1 a\nx")}, want: scp.ErrProtocol, msg: "before the sink answered"},
		{name: "records before ready", cmd: "scp -t /x", steps: nil, want: nil},
		{name: "sink out of turn", cmd: "scp -t /x", steps: []step{sink("\x00")}, want: scp.ErrProtocol, msg: "out of turn"},
		{name: "bad response byte", cmd: "scp -t /x", steps: []step{src("C0644 1 a\n"), sink("x")}, want: scp.ErrProtocol},
		{name: "bad trailer", cmd: "scp -t /x", steps: []step{src("C0644 1 a\n"), sink("\x00"), src("xy")}, want: scp.ErrProtocol},
	}
	r := rand.New(rand.NewPCG(13, 14))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConvo(t, tt.cmd, tt.limits, allow)
			require.NoError(t, c.feed(r, sink("\x00"), 1))
			var err error
			for _, st := range tt.steps {
				if err = c.feed(r, st, 100000); err != nil {
					break
				}
			}
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
			require.Contains(t, err.Error(), tt.msg)
			_, _, _, err = c.s.FromClient([]byte{0})
			require.Error(t, err, "broken for good")
		})
	}

	c := newConvo(t, "scp -t /x", scp.Limits{}, allow)
	_, _, _, err := c.s.FromClient([]byte("C0644 1 a\n"))
	require.ErrorIs(t, err, scp.ErrProtocol, "a record before the sink is ready")
}
