package mask

import "bytes"

// A stream is masked as it passes, in pieces that arrive as the host writes them: a value
// split across two reads (or written in two halves with a pause between them, which a
// caller who wants it unmasked would try) must still be found whole. What the detectors
// find (card numbers, IBANs, e-mail addresses, phone numbers, SSNs) is made only of letters,
// digits and a few separators; so the masker holds back the trailing run of such
// characters of what it has seen — a value that may go on — and lets everything before it
// through, masked. The run goes out with what follows it, or at the end of the stream.
// A run longer than maxHeldRun goes out but for its last maxHeldRun bytes, cut where no
// detected value crosses the cut (no detected value is that long).
//
// A regex detector whose matches contain other characters is applied to each piece
// between such characters as it passes; a match split by the arrival of the bytes exactly
// there is not found.

// maxHeldRun bounds what the masker holds back.
const maxHeldRun = 256

// valueByte reports whether c may be part of a detected value.
func valueByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		c == ' ' || c == '-' || c == '.' || c == '/' || c == '@' || c == '+' || c == '_' || c == '%' || c == '(' || c == ')' || c >= 0x80
}

// Stream masks one direction of a stream.
type Stream struct {
	m    *Masker
	held []byte
	// counts of values masked, for the record
	masked uint64
}

// NewStream masks a stream with m.
func NewStream(m *Masker) *Stream { return &Stream{m: m} }

// Feed takes the next piece and returns what may go out now, masked, and how many values
// it masked.
func (s *Stream) Feed(p []byte) ([]byte, int) {
	buf := append(s.held, p...)
	cut := len(buf)
	for cut > 0 {
		switch {
		case valueByte(buf[cut-1]):
			cut--
			continue
		case cut >= 2 && cut < len(buf) && (buf[cut-1] == '\t' || buf[cut-1] == '\n' || buf[cut-1] == '\r') &&
			isDigit(buf[cut-2]) && isDigit(buf[cut]):
			// A line break or tab between digits may separate a card number's groups.
			cut--
			continue
		}
		break
	}
	if len(buf)-cut > maxHeldRun {
		// A long run goes out but for its tail, cut where no value the detectors find in
		// what is here crosses the cut (a value longer than the tail is not one of theirs).
		limit := len(buf) - maxHeldRun
		cut = limit
		spans := s.m.Spans(buf)
		for moved := true; moved; {
			moved = false
			for _, sp := range spans {
				if sp[0] < cut && sp[1] > cut {
					cut, moved = sp[0], true
				}
			}
		}
		if limit-cut > maxHeldRun {
			// A "value" that long is not one of the detectors' (an e-mail address's parts
			// have no bound): what is held stays bounded, and the part of it that goes out
			// is redacted whole (fail closed).
			out, n := s.m.Detect(buf[:cut])
			out = append(append([]byte(nil), out...), bytes.Repeat([]byte{'*'}, limit-cut)...)
			s.held = append(s.held[:0], buf[limit:]...)
			s.masked += uint64(n + 1)
			return out, n + 1
		}
	}
	out, n := s.m.Detect(buf[:cut])
	// Detect returns its input when it finds nothing: copy before buf is reused.
	out = append([]byte(nil), out...)
	s.held = append(s.held[:0], buf[cut:]...)
	s.masked += uint64(n)
	return out, n
}

// Flush returns what is held, masked: the stream ended.
func (s *Stream) Flush() ([]byte, int) {
	if len(s.held) == 0 {
		return nil, 0
	}
	out, n := s.m.Detect(s.held)
	out = append([]byte(nil), out...)
	s.held = s.held[:0]
	s.masked += uint64(n)
	return out, n
}

// Held is how many bytes the stream holds back, waiting to see whether a value goes on.
func (s *Stream) Held() int { return len(s.held) }

// Masker is the masker the stream applies.
func (s *Stream) Masker() *Masker { return s.m }
