package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup codes (the int32 after the length in an untyped startup packet).
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	protocolV3        = 3 << 16
)

// maxStartupBytes bounds startup packets; PostgreSQL itself uses 10000.
const maxStartupBytes = 10000

// errTooLarge reports a message over the configured limit.
var errTooLarge = errors.New("message too large")

// readStartup reads one untyped startup packet from r (no buffering, so that a TLS
// handshake can follow on the same connection).
func readStartup(r io.Reader) (code uint32, body []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 8 || n > maxStartupBytes {
		return 0, nil, fmt.Errorf("startup packet length %d outside 8..%d", n, maxStartupBytes)
	}
	code = binary.BigEndian.Uint32(hdr[4:])
	body = make([]byte, n-8)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return code, body, nil
}

// readTyped reads one typed message without buffering (used during authentication).
func readTyped(r io.Reader, max int) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 {
		return 0, nil, fmt.Errorf("message %q has invalid length %d", hdr[0], n)
	}
	if n-4 > max {
		return 0, nil, fmt.Errorf("%w: %q is %d bytes, limit %d", errTooLarge, hdr[0], n-4, max)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// msgReader reads typed messages into a reused buffer. raw holds the whole message (type,
// length and body) so it can be forwarded with one write; it is valid until the next read.
type msgReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func (m *msgReader) next() (typ byte, raw, body []byte, err error) {
	hdr, err := m.r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, nil, err
	}
	typ = hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 {
		return 0, nil, nil, fmt.Errorf("message %q has invalid length %d", typ, n)
	}
	if n-4 > m.max {
		return 0, nil, nil, fmt.Errorf("%w: %q is %d bytes, limit %d", errTooLarge, typ, n-4, m.max)
	}
	total := n + 1
	if cap(m.buf) < total {
		m.buf = make([]byte, total)
	}
	raw = m.buf[:total]
	if _, err := io.ReadFull(m.r, raw); err != nil {
		return 0, nil, nil, err
	}
	// Do not keep a huge buffer after one huge message.
	if cap(m.buf) > 1<<20 && total <= 1<<20 {
		m.buf = nil
	}
	return typ, raw, raw[5:], nil
}

// buffered reports whether another message is already waiting.
func (m *msgReader) buffered() bool { return m.r.Buffered() > 0 }

func encode(msgs ...pgproto3.Message) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			// Encoding our own well-formed messages cannot fail; a failure is a bug.
			panic(fmt.Sprintf("encode %T: %v", m, err))
		}
	}
	return b
}

// pgError builds an ErrorResponse.
func pgError(severity, code, msg, hint string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg, Hint: hint}
}

// cstring reads a NUL-terminated string from b and returns it with the rest.
func cstring(b []byte) (string, []byte, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, errors.New("missing string terminator")
	}
	return string(b[:i]), b[i+1:], nil
}

// dataRowValues splits a DataRow body into values (nil = NULL), reusing dst.
func dataRowValues(body []byte, dst [][]byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	dst = dst[:0]
	for i := 0; i < n; i++ {
		if len(body) < 4 {
			return nil, errors.New("short DataRow value length")
		}
		l := int(int32(binary.BigEndian.Uint32(body)))
		body = body[4:]
		if l < 0 {
			dst = append(dst, nil)
			continue
		}
		if l > len(body) {
			return nil, errors.New("DataRow value overruns message")
		}
		dst = append(dst, body[:l:l])
		body = body[l:]
	}
	return dst, nil
}
