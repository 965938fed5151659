package jsonmask

import (
	"encoding/binary"
	"errors"
	"fmt"
)

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
