package jsonmask

import (
	"encoding/binary"
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

// scanner states.
const (
	stTop        = iota // between top-level values
	stValue             // a value must come
	stValueOrEnd        // after [
	stKeyOrEnd          // after {
	stKey               // after , in an object
	stColon             // after a key
	stAfter             // after a value in an object or array
	stString            // in a string (key or value)
	stEsc               // after \ in a string
	stHex               // in the four hex digits of \u
	stNumMinus          // after -
	stNumZero           // after a leading 0
	stNumInt            // in the integer digits
	stNumDot            // after .
	stNumFrac           // in the fraction digits
	stNumE              // after e or E
	stNumESign          // after the exponent's sign
	stNumExp            // in the exponent digits
	stLit               // in true, false or null
)

// output modes for the bytes of the current Write from w.from on.
const (
	modePass     = iota // copied to the output as they are
	modeHold            // kept in w.val until the value they belong to is complete
	modeSuppress        // dropped: a masked value's content
)

const (
	kindTop = iota
	kindObj
	kindArr
)

type frame struct {
	kind   uint8
	lo, hi int32 // its positions in w.st
	n      int   // elements of an array so far
}

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

// emitRef adds b, a piece of the current Write's input, to the output. The first piece
// after a flush is kept by reference: pass-through output is mostly one piece per Write,
// written without a copy (Write flushes before it returns).
func (w *Writer) emitRef(b []byte) {
	if len(b) == 0 {
		return
	}
	if w.pend == nil && len(w.out) == 0 {
		w.pend = b
		return
	}
	w.emit(b)
}

// emit adds b to the output, writing to dst when enough is held.
func (w *Writer) emit(b []byte) {
	w.settle()
	if len(w.out)+len(b) > flushAt {
		w.flush()
		if len(b) > flushAt {
			w.write(b)
			return
		}
	}
	w.out = append(w.out, b...)
}

// settle moves the piece kept by reference into the output buffer (or to dst if large).
func (w *Writer) settle() {
	if w.pend == nil {
		return
	}
	if len(w.pend) >= flushAt/4 {
		w.write(w.pend)
	} else {
		w.out = append(w.out, w.pend...)
	}
	w.pend = nil
}

func (w *Writer) emitQuoted(s []byte) {
	w.settle()
	w.out = appendQuoted(w.out, s)
	if len(w.out) > flushAt {
		w.flush()
	}
}

func (w *Writer) flush() {
	w.settle()
	if len(w.out) > 0 {
		w.write(w.out)
		w.out = w.out[:0]
	}
}

func (w *Writer) write(b []byte) {
	if w.werr == nil {
		_, w.werr = w.dst.Write(b)
	}
}

// cut gives p[w.from:i] to the current mode.
func (w *Writer) cut(p []byte, i int) {
	seg := p[w.from:i]
	w.from = i
	switch w.mode {
	case modePass:
		w.emitRef(seg)
	case modeHold:
		if len(w.val)+len(seg) <= w.maxValue {
			w.val = append(w.val, seg...)
			return
		}
		if w.vinspect {
			w.val = w.val[:0]
			w.mode = modeSuppress
			return
		}
		// kept whole only to emit it whole: past the bound, it streams
		w.emit(w.val)
		w.emit(seg)
		w.val = w.val[:0]
		w.mode = modePass
	}
}

// held returns the held value ending at p[e] (exclusive), or nil if it
// is longer than maxValue.
func (w *Writer) held(p []byte, e int) []byte {
	seg := p[w.from:e]
	w.from = e
	if len(w.val)+len(seg) > w.maxValue {
		w.val = w.val[:0]
		return nil
	}
	if len(w.val) == 0 {
		return seg
	}
	w.val = append(w.val, seg...)
	return w.val
}

// release writes a value held only to be written whole, ending at p[e] (exclusive).
func (w *Writer) release(p []byte, e int) {
	w.emit(w.val)
	w.val = w.val[:0]
	w.mode = modePass
	w.cut(p, e)
}

// endChunk keeps what the next Write needs of p.
func (w *Writer) endChunk(p []byte) {
	switch w.state {
	case stString, stEsc, stHex:
		if w.inKey {
			if w.keyWant {
				w.keepKey(p[w.kstart:])
			}
		} else if w.mode == modePass && w.vinspect {
			// to be inspected whole: keep the part seen so far
			w.cut(p, w.vstart)
			w.mode = modeHold
		}
	case stNumMinus, stNumZero, stNumInt, stNumDot, stNumFrac, stNumE, stNumESign, stNumExp, stLit:
		if w.mode == modePass {
			// a number or literal is written whole: keep the part seen so far
			w.cut(p, w.vstart)
			w.mode = modeHold
		}
	}
	w.cut(p, len(p))
}

func (w *Writer) keepKey(seg []byte) {
	if w.keyLong {
		return
	}
	if len(w.keyBuf)+len(seg) > w.keyLimit {
		w.keyLong = true
		w.keyBuf = w.keyBuf[:0]
		return
	}
	w.keyBuf = append(w.keyBuf, seg...)
}

// strPlain marks the bytes a string can hold as they are: not ", \, a control character or
// the start of a multi-byte character.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 reports whether any of the 8 bytes in x is not strPlain.
func special8(x uint64) bool {
	quote := x ^ ('"' * ones)
	bslash := x ^ ('\\' * ones)
	t := (x - 0x20*ones) | (quote - ones) | (bslash - ones)
	// a byte below 0x20, or equal to " or \\ (zero after the xor), sets its high bit
	// when subtracted from (a borrow only runs on from such a byte); a byte from 0x80 has it
	return (t|x)&highs != 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// scan runs the scanner over p and returns how much of it it took (all of it, or up to the
// offending byte).
func (w *Writer) scan(p []byte) (int, error) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch w.state {
		case stString:
			if w.u8rem > 0 {
				if c < w.u8lo || c > w.u8hi {
					return i, w.syntax(i, "invalid UTF-8 in string")
				}
				w.u8rem--
				w.u8lo, w.u8hi = 0x80, 0xBF
				i++
				continue
			}
			for i+8 <= len(p) && !special8(binary.LittleEndian.Uint64(p[i:])) {
				i += 8
			}
			for i < len(p) && strPlain[p[i]] {
				i++
			}
			if i == len(p) {
				continue
			}
			c = p[i]
			switch {
			case c == '"':
				i++
				if w.inKey {
					w.endKey(p, i-1)
				} else {
					w.endScalar(p, i)
				}
			case c == '\\':
				w.sawEsc = true
				w.state = stEsc
				i++
			case c < 0x20:
				return i, w.syntax(i, "control character in string")
			default:
				if err := w.utf8Lead(c); err != nil {
					return i, w.syntax(i, "invalid UTF-8 in string")
				}
				i++
			}
		case stEsc:
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				w.state = stString
			case 'u':
				w.state = stHex
				w.hex = 0
			default:
				return i, w.syntax(i, "invalid escape in string")
			}
			i++
		case stHex:
			if unhex[c] == 0 && c != '0' {
				return i, w.syntax(i, "invalid \\u escape in string")
			}
			if w.hex++; w.hex == 4 {
				w.state = stString
			}
			i++
		case stTop, stValue, stValueOrEnd, stAfter, stColon, stKeyOrEnd, stKey:
			if isSpace(c) {
				i++
				for i < len(p) && isSpace(p[i]) {
					i++
				}
				continue
			}
			if err := w.structural(p, i, c); err != nil {
				return i, err
			}
			i++
		case stNumMinus:
			switch {
			case c == '0':
				w.state = stNumZero
			case c >= '1' && c <= '9':
				w.state = stNumInt
			default:
				return i, w.syntax(i, "invalid number")
			}
			i++
		case stNumZero, stNumInt, stNumFrac, stNumExp:
			if w.state != stNumZero {
				for i < len(p) && p[i] >= '0' && p[i] <= '9' {
					i++
				}
				if i == len(p) {
					continue
				}
				c = p[i]
			}
			switch {
			case c == '.' && (w.state == stNumZero || w.state == stNumInt):
				w.state = stNumDot
				i++
			case (c == 'e' || c == 'E') && w.state != stNumExp:
				w.state = stNumE
				i++
			case c >= '0' && c <= '9': // after a leading zero
				return i, w.syntax(i, "invalid number (leading zero)")
			default:
				w.endScalar(p, i) // c is read again after the number
			}
		case stNumDot:
			if c < '0' || c > '9' {
				return i, w.syntax(i, "invalid number (no digit after .)")
			}
			w.state = stNumFrac
			i++
		case stNumE:
			switch {
			case c == '+' || c == '-':
				w.state = stNumESign
			case c >= '0' && c <= '9':
				w.state = stNumExp
			default:
				return i, w.syntax(i, "invalid number (no exponent digits)")
			}
			i++
		case stNumESign:
			if c < '0' || c > '9' {
				return i, w.syntax(i, "invalid number (no exponent digits)")
			}
			w.state = stNumExp
			i++
		case stLit:
			if c != w.lit[w.litPos] {
				return i, w.syntax(i, "invalid literal")
			}
			i++
			if w.litPos++; w.litPos == len(w.lit) {
				w.endScalar(p, i)
			}
		}
	}
	return i, nil
}

// utf8Lead checks the first byte of a multi-byte character and sets what the next ones
// may be (no overlong forms, surrogates or code points past U+10FFFF).
func (w *Writer) utf8Lead(c byte) error {
	w.u8lo, w.u8hi = 0x80, 0xBF
	switch {
	case c >= 0xC2 && c <= 0xDF:
		w.u8rem = 1
	case c == 0xE0:
		w.u8rem, w.u8lo = 2, 0xA0
	case c == 0xED:
		w.u8rem, w.u8hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		w.u8rem = 2
	case c == 0xF0:
		w.u8rem, w.u8lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		w.u8rem = 3
	case c == 0xF4:
		w.u8rem, w.u8hi = 3, 0x8F
	default:
		return errors.New("invalid UTF-8")
	}
	return nil
}

// structural handles a byte other than white space where a value, a key or punctuation
// may come.
func (w *Writer) structural(p []byte, i int, c byte) error {
	top := &w.stack[len(w.stack)-1]
	switch w.state {
	case stTop, stValue:
		return w.beginValue(p, i, c)
	case stValueOrEnd:
		if c == ']' {
			w.endContainer(p, i)
			return nil
		}
		return w.beginValue(p, i, c)
	case stKeyOrEnd, stKey:
		if c == '"' {
			w.beginKey(i)
			return nil
		}
		if c == '}' && w.state == stKeyOrEnd {
			w.endContainer(p, i)
			return nil
		}
		return w.syntax(i, "expected a member name in quotes")
	case stColon:
		if c != ':' {
			return w.syntax(i, "expected : after a member name")
		}
		w.state = stValue
		return nil
	default: // stAfter
		switch {
		case c == ',' && top.kind == kindObj:
			w.state = stKey
		case c == ',':
			w.state = stValue
		case c == '}' && top.kind == kindObj, c == ']' && top.kind == kindArr:
			w.endContainer(p, i)
		default:
			return w.syntax(i, "expected , or the end of an object or array")
		}
		return nil
	}
}

func (w *Writer) beginKey(i int) {
	w.state = stString
	w.inKey = true
	w.sawEsc = false
	top := &w.stack[len(w.stack)-1]
	w.keyWant = top.hi > top.lo
	w.kstart = i + 1
	w.vstart = i
	w.keyBuf = w.keyBuf[:0]
	w.keyLong = false
}

// endKey works out which fields continue into the member named by the key ending at the
// closing quote p[q].
func (w *Writer) endKey(p []byte, q int) {
	w.state = stColon
	w.inKey = false
	top := &w.stack[len(w.stack)-1]
	w.st = w.st[:top.hi]
	w.nextMatch = -1
	if !w.keyWant {
		return
	}
	var key []byte
	if len(w.keyBuf) == 0 && !w.keyLong {
		key = p[w.kstart:q]
		if len(key) > w.keyLimit {
			w.keyLong = true
		}
	} else {
		w.keepKey(p[w.kstart:q])
		key = w.keyBuf
	}
	if w.sawEsc && !w.keyLong {
		w.dec = unescape(w.dec[:0], key)
		key = w.dec
	}
	w.st, w.nextMatch = w.m.advance(w.st, w.st[top.lo:top.hi], true, key, w.keyLong, 0)
}

// beginValue starts the value whose first byte is p[i] == c.
func (w *Writer) beginValue(p []byte, i int, c byte) error {
	top := &w.stack[len(w.stack)-1]
	switch top.kind {
	case kindTop:
		w.st = append(w.st[:0], w.m.init...)
		w.nextMatch = w.m.root
	case kindArr:
		w.st = w.st[:top.hi]
		w.nextMatch = -1
		if top.hi > top.lo {
			w.st, w.nextMatch = w.m.advance(w.st, w.st[top.lo:top.hi], false, nil, false, top.n)
		}
		top.n++
	}
	match := w.nextMatch
	if w.skipAt > 0 {
		match = -1
	}
	switch {
	case c == '{' || c == '[':
		if len(w.stack) > w.maxDepth {
			return &SyntaxError{Msg: fmt.Sprintf("nested deeper than %d", w.maxDepth), Offset: w.off + int64(i), err: ErrTooDeep}
		}
		f := frame{kind: kindObj, lo: int32(top.hi), hi: int32(len(w.st))}
		w.state = stKeyOrEnd
		if c == '[' {
			f.kind = kindArr
			w.state = stValueOrEnd
		}
		if match >= 0 {
			f.hi = f.lo
			w.st = w.st[:f.lo]
			w.cut(p, i)
			w.mode = modeSuppress
			w.skipField = match
		}
		w.stack = append(w.stack, f)
		if match >= 0 {
			w.skipAt = len(w.stack) - 1
		}
		return nil
	case c == '"':
		w.state = stString
		w.inKey = false
		w.sawEsc = false
	case c == '-' || c >= '0' && c <= '9':
		switch {
		case c == '-':
			w.state = stNumMinus
		case c == '0':
			w.state = stNumZero
		default:
			w.state = stNumInt
		}
	case c == 't':
		w.state, w.lit = stLit, "true"
	case c == 'f':
		w.state, w.lit = stLit, "false"
	case c == 'n':
		w.state, w.lit = stLit, "null"
	default:
		return w.syntax(i, "expected a value")
	}
	w.litPos = 1
	w.vstart = i
	w.vfield = -1
	w.vinspect = w.detect != nil && w.skipAt == 0 && w.state != stLit
	if match >= 0 {
		// masked: a string is held to be given to Mask, anything else dropped
		w.cut(p, i)
		w.vfield = match
		w.vinspect = true
		w.mode = modeSuppress
		if c == '"' {
			w.mode = modeHold
		}
	}
	return nil
}

// endValue moves on after a value.
func (w *Writer) endValue() {
	if len(w.stack) == 1 {
		w.state = stTop
	} else {
		w.state = stAfter
	}
}

// endContainer closes the object or array whose last byte is p[i].
func (w *Writer) endContainer(p []byte, i int) {
	depth := len(w.stack) - 1
	w.stack = w.stack[:depth]
	w.st = w.st[:w.stack[depth-1].hi]
	if w.skipAt == depth {
		w.skipAt = 0
		w.cut(p, i+1)
		w.mode = modePass
		w.emitQuoted(redacted)
		w.counts[w.skipField]++
	}
	w.endValue()
}

// endScalar ends the string, number or literal whose last byte is p[e-1]. One that fits
// in a Write stays where it is in p unless it is masked; one that spans Writes is in w.val.
func (w *Writer) endScalar(p []byte, e int) {
	w.endValue()
	if w.skipAt > 0 {
		return
	}
	switch w.mode {
	case modePass:
		if !w.vinspect {
			return
		}
		raw := p[w.vstart:e]
		if len(raw) > w.maxValue {
			w.cut(p, w.vstart)
			w.from = e
			w.redactWhole()
			return
		}
		if repl, ok := w.inspect(raw); ok {
			w.cut(p, w.vstart)
			w.from = e
			w.emitQuoted(repl)
		}
	case modeHold:
		if !w.vinspect {
			w.release(p, e)
			return
		}
		raw := w.held(p, e)
		w.mode = modePass
		if raw == nil {
			w.redactWhole()
			return
		}
		if repl, ok := w.inspect(raw); ok {
			w.emitQuoted(repl)
		} else {
			w.emit(raw)
		}
		w.val = w.val[:0]
	case modeSuppress:
		w.from = e
		w.mode = modePass
		w.redactWhole()
	}
}

// inspect returns what replaces the string or number raw (as written), if anything does.
func (w *Writer) inspect(raw []byte) ([]byte, bool) {
	var text []byte
	if raw[0] == '"' {
		text = raw[1 : len(raw)-1]
		if w.sawEsc {
			w.dec = unescape(w.dec[:0], text)
			text = w.dec
		}
		if w.vfield >= 0 {
			w.counts[w.vfield]++
			return w.maskText(w.methods[w.vfield], text), true
		}
	} else {
		text = raw
		for _, c := range raw {
			if c == '.' || c == 'e' || c == 'E' {
				if plain, ok := appendPlain(w.num[:0], raw); ok {
					w.num = plain
					text = plain
				}
				break
			}
		}
	}
	masked, n := w.detect(text)
	if n == 0 {
		return nil, false
	}
	w.counts[len(w.fields)] += uint64(n)
	return masked, true
}

var redacted = []byte(Redacted)

func (w *Writer) maskText(method string, v []byte) []byte {
	if w.mask == nil {
		return redacted
	}
	return w.mask(method, v)
}

// redactWhole replaces a value masked whole: one a field masks that is not a string or is too
// long to hold, or one the detectors cannot read because it is too long to hold.
func (w *Writer) redactWhole() {
	w.emitQuoted(redacted)
	if w.vfield >= 0 {
		w.counts[w.vfield]++
	} else {
		w.counts[len(w.fields)+1]++
	}
}
