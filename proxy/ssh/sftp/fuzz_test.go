package sftp_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/proxy/ssh/sftp"
)

// segments encodes chunks for FuzzStream: per chunk a 2-byte header (top
// bit set: from the server; the rest: the length) and the bytes.
func segments(chunks []chunk) []byte {
	var out []byte
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

// handshake and a session of every request kind, as seeds.
func seedSession() []chunk {
	c := func(b ...[]byte) chunk { return chunk{FromClient: true, Data: cat(b...)} }
	s := func(b ...[]byte) chunk { return chunk{Data: cat(b...)} }
	return []chunk{
		c(pkt(tInit, 3)), s(pkt(tVersion, 3, "posix-rename@openssh.com", "1")),
		c(pkt(tOpen, 1, "/a", 0x1a, attrs{}), pkt(tOpendir, 2, "/d")),
		s(pkt(tHandle, 1, "h"), pkt(tHandle, 2, "d")),
		c(pkt(tWrite, 3, "h", uint64(0), "abc"), pkt(tRead, 4, "h", uint64(0), 10), pkt(tReaddir, 5, "d")),
		s(status(3, 0), pkt(tData, 4, "xy"), pkt(tName, 5, 1, "f", "-rw f", attrs{})),
		c(pkt(tFstat, 6, "h"), pkt(tFsetstat, 7, "h", uint32(0x8000000f), uint64(1), 2, 3, 4, 5, 6, 1, "t", "d")),
		s(pkt(tAttrs, 6, attrs{}), status(7, 0)),
		c(pkt(tClose, 8, "h"), pkt(tClose, 9, "d"), pkt(tRename, 10, "a", "b"), pkt(tSymlink, 11, "t", "l"),
			pkt(tExtended, 12, "hardlink@openssh.com", "a", "b"), pkt(tExtended, 13, "copy-data", "h", uint64(0), uint64(0), "h", uint64(0)),
			pkt(tExtended, 14, "x@y", "z")),
		s(status(8, 0), status(9, 0), status(10, 0), status(11, 0), status(12, 0), pkt(201, 14, "r")),
	}
}

func FuzzStream(f *testing.F) {
	f.Add(segments(seedSession()))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := sftp.NewStream(sftp.Limits{MaxPacket: 4096, MaxPending: 8, MaxHandles: 4, MaxPath: 64}, func(op sftp.Op) (bool, string) {
			return len(op.Path)%2 == 0, "odd"
		})
		for len(data) >= 2 {
			h := binary.BigEndian.Uint16(data)
			n := min(int(h&0x7fff), len(data)-2)
			p := data[2 : 2+n]
			data = data[2+n:]
			var err error
			if h&0x8000 == 0 {
				var fwd, reply []byte
				fwd, reply, _, err = s.FromClient(p)
				wholePackets(t, fwd)
				wholePackets(t, reply)
			} else {
				var fwd []byte
				fwd, _, err = s.FromServer(p)
				wholePackets(t, fwd)
			}
			if err != nil {
				break
			}
		}
		s.Close()
	})
}

// wholePackets fails unless b is a sequence of whole packets.
func wholePackets(t *testing.T, b []byte) {
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("a partial length: %x", b)
		}
		n := binary.BigEndian.Uint32(b)
		if n < 5 || uint64(len(b)) < 4+uint64(n) {
			t.Fatalf("a partial packet: length %d, %d bytes", n, len(b))
		}
		b = b[4+n:]
	}
}

// TestWriteFuzzCorpus writes the seed corpus from a real session into
// testdata (GEN_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("GEN_FUZZ_CORPUS") == "" {
		t.Skip("set GEN_FUZZ_CORPUS=1 to write testdata/fuzz/FuzzStream")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzStream")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, chunks []chunk) {
		b := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", segments(chunks))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("session", seedSession())
	rec := realSession(t, 4000)
	write("openssh", rec.Chunks)
}
