package bus

import (
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/gatehouse/gatehouse/schemas"
)

// An audit message's data is one event's JSON, or several events of one session separated
// by newlines. A proxy may send it compressed: then the header HeaderEncoding says how.
// Every reader of GH_AUDIT goes through AuditData.
const (
	HeaderEncoding = schemas.HeaderAuditEncoding
	// EncodingS2 is the whole data compressed as one S2 block (github.com/klauspost/compress/s2).
	EncodingS2 = schemas.EncodingS2
	// MaxAuditData bounds an audit message's decoded size: a compressed message claiming
	// more is refused unread.
	MaxAuditData = 16 << 20
)

// minCompress is the smallest data worth compressing: below it the saving is a few bytes.
const minCompress = 512

// CompressAudit sets m's data to data, compressed into dst's storage when that is worth it
// (and the header saying so). It returns the buffer that holds the compressed data, for
// reuse once the message is acknowledged, or nil when data goes as it is (dst is then
// untouched: the caller keeps it).
func CompressAudit(m *nats.Msg, data, dst []byte) []byte {
	if len(data) < minCompress {
		m.Data = data
		return nil
	}
	if n := s2.MaxEncodedLen(len(data)); cap(dst) < n {
		dst = make([]byte, n)
	}
	enc := s2.Encode(dst[:cap(dst)], data)
	if len(enc) >= len(data) {
		m.Data = data
		return nil
	}
	m.Data = enc
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderEncoding, EncodingS2)
	return dst[:0]
}

// AuditData returns the events of an audit message (newline-separated JSON), decoding it as
// its HeaderEncoding says. A message in an unknown encoding, one that does not decode, or
// one that would decode to more than MaxAuditData is an error.
func AuditData(h nats.Header, data []byte) ([]byte, error) { return AuditDataInto(h, data, nil) }

// AuditDataInto is AuditData decoding into dst's storage when it is large enough.
func AuditDataInto(h nats.Header, data, dst []byte) ([]byte, error) {
	enc := ""
	if h != nil {
		enc = h.Get(HeaderEncoding)
	}
	switch enc {
	case "":
		return data, nil
	case EncodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, fmt.Errorf("audit message: s2: %w", err)
		}
		if n > MaxAuditData {
			return nil, fmt.Errorf("audit message: decodes to %d bytes, more than the %d allowed", n, MaxAuditData)
		}
		if cap(dst) < n {
			dst = make([]byte, n)
		}
		out, err := s2.Decode(dst[:n], data)
		if err != nil {
			return nil, fmt.Errorf("audit message: s2: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("audit message: unknown %s %q", HeaderEncoding, enc)
	}
}
