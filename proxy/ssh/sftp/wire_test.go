package sftp_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// attrs is an empty ATTRS (no flags) in a packet under construction.
type attrs struct{}

// pkt builds an SFTP packet: uint32 and uint64 fields big-endian, string
// and []byte fields as SSH strings, attrs{} as an empty ATTRS.
func pkt(typ byte, fields ...any) []byte {
	body := []byte{typ}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case int:
			body = binary.BigEndian.AppendUint32(body, uint32(v))
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case attrs:
			body = binary.BigEndian.AppendUint32(body, 0)
		default:
			panic("pkt: unknown field type")
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

const (
	tInit = 1 + iota
	tVersion
	tOpen
	tClose
	tRead
	tWrite
	tLstat
	tFstat
	tSetstat
	tFsetstat
	tOpendir
	tReaddir
	tRemove
	tMkdir
	tRmdir
	tRealpath
	tStat
	tRename
	tReadlink
	tSymlink
)

const (
	tStatus   = 101
	tHandle   = 102
	tData     = 103
	tName     = 104
	tAttrs    = 105
	tExtended = 200
)

func status(id uint32, code uint32) []byte { return pkt(tStatus, id, code, "", "") }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// pieces cuts b into random pieces of 1 to max bytes.
func pieces(r *rand.Rand, b []byte, max int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + r.IntN(max)
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestPacketBuilder(t *testing.T) {
	require.Equal(t, []byte{0, 0, 0, 5, 1, 0, 0, 0, 3}, pkt(tInit, 3))
}
