package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func typed(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func TestMsgReader(t *testing.T) {
	in := append(typed('Q', []byte("select 1\x00")), typed('X', nil)...)
	r := &msgReader{r: bufio.NewReader(bytes.NewReader(in)), max: 100}
	typ, raw, body, err := r.next()
	require.NoError(t, err)
	require.Equal(t, byte('Q'), typ)
	require.Equal(t, in[:len(raw)], raw, "raw is the whole message, ready to forward")
	require.Equal(t, "select 1\x00", string(body))
	require.True(t, r.buffered())
	typ, _, body, err = r.next()
	require.NoError(t, err)
	require.Equal(t, byte('X'), typ)
	require.Empty(t, body)
	_, _, _, err = r.next()
	require.ErrorIs(t, err, io.EOF)

	big := &msgReader{r: bufio.NewReader(bytes.NewReader(typed('Q', make([]byte, 200)))), max: 100}
	_, _, _, err = big.next()
	require.ErrorIs(t, err, errTooLarge)

	bad := &msgReader{r: bufio.NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 2})), max: 100}
	_, _, _, err = bad.next()
	require.ErrorContains(t, err, "invalid length")

	short := &msgReader{r: bufio.NewReader(bytes.NewReader([]byte{'Q', 0, 0})), max: 100}
	_, _, _, err = short.next()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestReadStartupBounds(t *testing.T) {
	pkt := make([]byte, 8)
	binary.BigEndian.PutUint32(pkt, 20000)
	_, _, err := readStartup(bytes.NewReader(pkt))
	require.ErrorContains(t, err, "outside 8..10000")
	binary.BigEndian.PutUint32(pkt, 8)
	binary.BigEndian.PutUint32(pkt[4:], codeSSLRequest)
	code, body, err := readStartup(bytes.NewReader(pkt))
	require.NoError(t, err)
	require.Equal(t, uint32(codeSSLRequest), code)
	require.Empty(t, body)
}

func TestDataRowValues(t *testing.T) {
	body := []byte{0, 3}
	body = binary.BigEndian.AppendUint32(body, 2)
	body = append(body, "hi"...)
	body = binary.BigEndian.AppendUint32(body, 0xFFFFFFFF) // NULL
	body = binary.BigEndian.AppendUint32(body, 0)
	vals, err := dataRowValues(body, nil)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("hi"), nil, {}}, vals)
	_, err = dataRowValues([]byte{0, 1, 0, 0, 0, 9, 'x'}, nil)
	require.Error(t, err)
}

// FuzzMsgReader feeds arbitrary bytes to the message decoder and to the per-message parsers
// the client loop uses: none may panic, and every message returned respects the limit.
func FuzzMsgReader(f *testing.F) {
	f.Add(typed('Q', []byte("select 1\x00")))
	f.Add(typed('P', []byte("s1\x00select $1\x00\x00\x01\x00\x00\x00\x17")))
	f.Add(typed('D', []byte{0, 1, 0, 0, 0, 1, 'x'}))
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &msgReader{r: bufio.NewReader(bytes.NewReader(in)), max: 1024}
		for {
			typ, raw, body, err := r.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errTooLarge) && len(raw) != 0 {
					t.Fatalf("error with data: %v", err)
				}
				return
			}
			if len(body) > 1024 || raw[0] != typ {
				t.Fatalf("message over limit or mislabelled")
			}
			_, _ = dataRowValues(body, nil)
			_, _, _ = cstring(body)
		}
	})
}

// FuzzReadStartup feeds arbitrary startup packets to the startup reader.
func FuzzReadStartup(f *testing.F) {
	ssl := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), codeSSLRequest)
	f.Add(ssl)
	f.Add([]byte{0, 0, 0, 9, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		code, body, err := readStartup(bytes.NewReader(in))
		if err == nil && len(body) > maxStartupBytes {
			t.Fatalf("startup body %d bytes (code %d) over limit", len(body), code)
		}
	})
}

// FuzzSQLNames: what a statement does to prepared-statement and cursor names is read
// from any text without a panic.
func FuzzSQLNames(f *testing.F) {
	for _, s := range []string{"PREPARE p AS select 1", "EXECUTE p(1, 2)", "DEALLOCATE ALL", "DISCARD ALL",
		"DECLARE c CURSOR WITH HOLD FOR select 1; FETCH 10 FROM c; CLOSE c", "CLOSE ALL", "MOVE NEXT IN c", "EXPLAIN EXECUTE p", "select"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) { _, _, _ = sqlNames(sql) })
}
