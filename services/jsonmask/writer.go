package jsonmask

import (
	"errors"
	"fmt"
	"io"
)

// Methods a Field names. The Writer passes the method to Spec.Mask as it is.
const (
	Redact  = "redact"
	Partial = "partial"
	HMAC    = "hmac"
)

// Redacted replaces a matched value that is not a string, a value too long to inspect,
// and, without a Spec.Mask, every matched value.
const Redacted = "[redacted]"

// Count names: the detectors, and the values masked because they were too long to inspect.
const (
	DetectorsName = "detectors"
	OversizeName  = "max_value"
)

// Defaults of Spec.
const (
	DefaultMaxValue = 1 << 20
	DefaultMaxDepth = 512
)

// ErrTooDeep is wrapped by the SyntaxError of a document nested deeper than Spec.MaxDepth.
var ErrTooDeep = errors.New("JSON nested too deep")

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("jsonmask: write after close")

// Field is a field to mask.
type Field struct {
	Path   Path
	Method string // redact (if empty), partial or hmac: passed to Spec.Mask for a string
	Name   string // the name its masked values are counted under; Path.String() if empty
}

// Spec says what a Writer masks. It is only read, so one Spec may serve many Writers.
type Spec struct {
	// Fields are masked by path; the first field (in order) whose path reaches a value
	// decides its method. A string is replaced by Mask(method, its text); any other value
	// (number, true, false, null, object, array) by the string Redacted.
	Fields []Field
	// Mask masks the text of a matched string (unescaped; valid only during the call, not
	// to be modified) and returns the replacement text, which the Writer quotes (bytes
	// that are not UTF-8 become U+FFFD). Nil: Redacted for every method.
	Mask func(method string, v []byte) []byte
	// Detect, if set, is run on the text of every other string value (not on keys) and on
	// every number (a number with a fraction or exponent in plain digits: 4111e12 →
	// 4111000000000000). It returns the masked text and how many values it masked; with n
	// 0 the value is left exactly as it was written. A masked number becomes a string.
	// Like Mask, it must not modify its argument, nor keep it past the call.
	Detect func(s []byte) (masked []byte, n int)
	// MaxValue bounds the bytes (as written, quotes included) of a value the Writer holds
	// to inspect: a longer one that must be inspected is replaced whole by Redacted rather
	// than held. A string nothing inspects streams through without a bound.
	// 0: DefaultMaxValue.
	MaxValue int
	// MaxDepth bounds the nesting of objects and arrays; deeper is an error.
	// 0: DefaultMaxDepth.
	MaxDepth int
}

// Count is how many values one field, or the detectors, masked.
type Count struct {
	Name   string // the field's Name, DetectorsName or OversizeName
	Method string // the field's method; "" for the detectors; Redact for OversizeName
	Count  uint64
}

// SyntaxError is malformed input: the Writer has written nothing from Offset on, nor any
// part of a value it had to inspect, and takes no more input.
type SyntaxError struct {
	Msg    string
	Offset int64 // of the offending byte in the whole stream
	err    error
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.Offset, e.Msg)
}

// Unwrap returns ErrTooDeep for a document nested too deep.
func (e *SyntaxError) Unwrap() error { return e.err }

// flushAt is the output held before a write to dst within one Write.
const flushAt = 32 << 10

// Writer masks a stream of JSON values written to it in pieces of any size and writes the
// result to its destination as each piece is scanned. It is not safe for concurrent use.
type Writer struct {
	dst      io.Writer
	m        matcher
	fields   []Field
	methods  []string
	mask     func(string, []byte) []byte
	detect   func([]byte) ([]byte, int)
	maxValue int
	maxDepth int
	keyLimit int

	state  uint8
	inKey  bool
	sawEsc bool
	u8rem  uint8
	u8lo   byte
	u8hi   byte
	hex    uint8
	lit    string
	litPos int

	stack     []frame
	st        []int32 // positions of every open container, then the next value's
	nextMatch int     // the field the next value is masked by, or -1
	skipAt    int     // depth of the masked container being consumed; 0 if none
	skipField int

	mode     uint8
	from     int // start of the bytes of the current Write not yet given to the mode
	vstart   int // start of the current number or literal in the current Write
	val      []byte
	vfield   int  // the field masking the held value, or -1
	vinspect bool // the held value must be inspected whole (not only kept whole)

	keyWant bool // the current key is matched against names
	kstart  int
	keyBuf  []byte
	keyLong bool

	dec  []byte
	num  []byte
	out  []byte
	pend []byte // output not yet copied into out: a piece of the current Write's input
	off  int64
	err  error
	werr error
	done bool

	counts []uint64 // per field, then the detectors, then oversize
	taken  []uint64
}

// NewWriter returns a Writer that writes spec's masking of what is written to it to dst.
// A nil spec masks nothing (the Writer still checks the JSON). Close does not close dst.
func NewWriter(dst io.Writer, spec *Spec) *Writer {
	if spec == nil {
		spec = &Spec{}
	}
	w := &Writer{
		dst:       dst,
		m:         newMatcher(spec.Fields),
		fields:    spec.Fields,
		mask:      spec.Mask,
		detect:    spec.Detect,
		maxValue:  spec.MaxValue,
		maxDepth:  spec.MaxDepth,
		nextMatch: -1,
		vfield:    -1,
		stack:     make([]frame, 1, 16),
		counts:    make([]uint64, len(spec.Fields)+2),
		taken:     make([]uint64, len(spec.Fields)+2),
	}
	if w.maxValue <= 0 {
		w.maxValue = DefaultMaxValue
	}
	if w.maxDepth <= 0 {
		w.maxDepth = DefaultMaxDepth
	}
	w.keyLimit = w.m.keyLimit()
	w.methods = make([]string, len(spec.Fields))
	for i, f := range spec.Fields {
		w.methods[i] = f.Method
		if f.Method == "" {
			w.methods[i] = Redact
		}
	}
	return w
}

// Write scans p, writes what it can of the masked output to dst, and keeps the rest of an
// incomplete value for the next Write. On malformed input it returns a *SyntaxError and
// the bytes of p before the offending one.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, ErrClosed
	}
	w.from, w.kstart, w.vstart = 0, 0, 0
	n, err := w.scan(p)
	if err != nil {
		if w.mode == modePass {
			// nothing of the token in error: a scalar is written whole, and a string
			// only as far as the previous writes went
			e := n
			if w.state >= stString && w.vstart >= w.from {
				e = w.vstart
			}
			w.emitRef(p[w.from:e])
		}
		w.err = err
	} else {
		w.endChunk(p)
	}
	w.off += int64(n)
	w.flush()
	if w.err == nil && w.werr != nil {
		w.err = w.werr
	}
	return n, w.err
}

// Close ends the stream: a top-level number still open ends here, anything else open is
// a *SyntaxError. It does not close dst.
func (w *Writer) Close() error {
	if w.err != nil || w.done {
		return w.err
	}
	w.done = true
	w.from, w.vstart = 0, 0
	switch {
	case w.state == stTop:
	case len(w.stack) == 1 && (w.state == stNumZero || w.state == stNumInt || w.state == stNumFrac || w.state == stNumExp):
		w.endScalar(nil, 0)
	default:
		w.err = &SyntaxError{Msg: "unexpected end of input", Offset: w.off}
	}
	w.flush()
	if w.err == nil && w.werr != nil {
		w.err = w.werr
	}
	return w.err
}

// Masked returns how many values each field and the detectors masked so far: the fields
// in the order of Spec.Fields, then DetectorsName, then OversizeName, leaving out zeros.
func (w *Writer) Masked() []Count {
	return w.countsSince(nil)
}

// TakeCounts returns the counts since the last TakeCounts, for recording as the stream
// goes.
func (w *Writer) TakeCounts() []Count {
	c := w.countsSince(w.taken)
	copy(w.taken, w.counts)
	return c
}

func (w *Writer) countsSince(base []uint64) []Count {
	var out []Count
	for i, n := range w.counts {
		if base != nil {
			n -= base[i]
		}
		if n == 0 {
			continue
		}
		switch f := len(w.fields); {
		case i < f:
			name := w.fields[i].Name
			if name == "" {
				name = w.fields[i].Path.String()
			}
			out = append(out, Count{Name: name, Method: w.methods[i], Count: n})
		case i == f:
			out = append(out, Count{Name: DetectorsName, Count: n})
		default:
			out = append(out, Count{Name: OversizeName, Method: Redact, Count: n})
		}
	}
	return out
}

func (w *Writer) syntax(i int, msg string) error {
	return &SyntaxError{Msg: msg, Offset: w.off + int64(i)}
}
