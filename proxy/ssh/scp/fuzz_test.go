package scp_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/proxy/ssh/scp"
)

// fuzzCommands are the execs a fuzz input picks from with its first byte.
var fuzzCommands = []string{"scp -t /srv", "scp -r -d -t /srv/", "scp -f /srv/f", "scp -r -f /srv/d", "scp -f /srv/*.txt"}

// segments encodes a fuzz input: the command's index, then per chunk a
// 2-byte header (top bit set: from the server; the rest: the length) and
// the bytes.
func segments(cmd byte, chunks []chunk) []byte {
	out := []byte{cmd}
	for _, c := range chunks {
		for d := c.Data; len(d) > 0; {
			n := min(len(d), 0x7fff)
			h := uint16(n)
			if !c.FromClient {
				h |= 0x8000
			}
			out = binary.BigEndian.AppendUint16(out, h)
			out = append(out, d[:n]...)
			d = d[n:]
		}
	}
	return out
}

func seedUpload() []chunk {
	c := func(s string) chunk { return chunk{FromClient: true, Data: []byte(s)} }
	s := func(s string) chunk { return chunk{Data: []byte(s)} }
	return []chunk{s("\x00"), c("T1 0 1 0\n"), s("\x00"), c("D0755 0 d\n"), s("\x00"), c("C0644 3 a\n"), s("\x00"), c("abc\x00"), s("\x00"),
		c("C0644 3 forbidden\n"), c("\x01scp: x: warning\n"), c("E\n"), s("\x00"), c("C0644 1 b\n"), s("\x01scp: b: denied\n"), c("\x02scp: bye\n")}
}

func FuzzStream(f *testing.F) {
	f.Add(segments(1, seedUpload()))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cmd, ok := scp.ParseCommand(fuzzCommands[int(data[0])%len(fuzzCommands)])
		if !ok {
			t.Fatal("fuzz command does not parse")
		}
		s := scp.NewStream(cmd, scp.Limits{MaxLine: 256, MaxDepth: 4}, func(op scp.Op) (bool, string) {
			return !strings.Contains(op.Path, "forbidden"), ""
		})
		data = data[1:]
		var fed, forwarded [2]int // per direction: a held line may go out later, never more than came in
		for len(data) >= 2 {
			h := binary.BigEndian.Uint16(data)
			n := min(int(h&0x7fff), len(data)-2)
			p := data[2 : 2+n]
			data = data[2+n:]
			var err error
			var fwd []byte
			if h&0x8000 == 0 {
				fwd, _, _, err = s.FromClient(p)
			} else {
				fwd, _, err = s.FromServer(p)
			}
			d := int(h >> 15)
			fed[d] += len(p)
			forwarded[d] += len(fwd)
			if forwarded[d] > fed[d] {
				t.Fatalf("forwarded %d bytes of %d", forwarded[d], fed[d])
			}
			if err != nil {
				break
			}
		}
		for _, f := range s.Close() {
			if f.Complete {
				t.Fatalf("a file still passing at Close is complete: %+v", f)
			}
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpus, from real scp -O runs, into
// testdata (GEN_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("GEN_FUZZ_CORPUS") == "" {
		t.Skip("set GEN_FUZZ_CORPUS=1 to write testdata/fuzz/FuzzStream")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzStream")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("upload", segments(1, seedUpload()))
	local := t.TempDir()
	for _, d := range []string{"tree/sub", "tree/forbidden"} {
		if err := os.MkdirAll(filepath.Join(local, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"tree/a", "tree/sub/b", "tree/forbidden/c"} {
		if err := os.WriteFile(filepath.Join(local, f), []byte("content of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	remote := t.TempDir()
	recs, out, err := scpO(t, "-r", "-p", filepath.Join(local, "tree"), "host:"+remote)
	if err != nil {
		t.Log(out)
	}
	write("openssh-upload", segments(0, recs[0].Chunks))
	recs, out, err = scpO(t, "-r", "host:"+filepath.Join(local, "tree"), filepath.Join(remote, "down"))
	if err != nil {
		t.Fatal(err, out)
	}
	write("openssh-download", segments(3, recs[0].Chunks))
}
