package jsonmask

import (
	"unicode/utf16"
	"unicode/utf8"
)

// unescape appends the text of a JSON string body (between the quotes, already checked
// by the scanner) to dst. A lone surrogate (\ud800) becomes U+FFFD, as encoding/json and
// browsers' TextDecoder read it.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(s[i:]))
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = utf16.DecodeRune(r, rune(hex4(s[i+2:])))
				}
				if r2 != utf8.RuneError {
					i += 6
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		default: // " \ /
			dst = append(dst, e)
		}
	}
	return dst
}

func hex4(b []byte) int {
	n := 0
	for _, c := range b[:4] {
		n = n<<4 | int(unhex[c])
	}
	return n
}

var unhex = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
		t[c-'a'+'A'] = byte(c - 'a' + 10)
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string. Bytes that are not UTF-8 become U+FFFD, so the
// output is valid whatever a Mask or Detect function returned.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 || r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			if r == utf8.RuneError {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, `\u202`...)
				dst = append(dst, hexDigits[r&0xf])
			}
			start = i + n
		}
		i += n
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// maxPlain bounds the plain form of a number written with a fraction or an exponent.
const maxPlain = 128

// appendPlain appends the number literal lit (already checked) without its exponent,
// leading zeros or trailing fractional zeros, so detectors see the digits a reader gets:
// 4.111111111111111e15 is 4111111111111111. ok is false if that would be longer than
// maxPlain.
func appendPlain(dst, lit []byte) (out []byte, ok bool) {
	var digits [maxPlain]byte
	nd, point := 0, 0 // digits of the mantissa, and how many of them precede the point
	neg := false
	i := 0
	if lit[0] == '-' {
		neg = true
		i++
	}
	seenPoint := false
	for ; i < len(lit); i++ {
		c := lit[i]
		if c == '.' {
			seenPoint = true
			continue
		}
		if c == 'e' || c == 'E' {
			break
		}
		if nd == 0 && c == '0' { // a leading zero
			if seenPoint {
				point--
			}
			continue
		}
		if nd == len(digits) {
			return dst, false
		}
		digits[nd] = c
		nd++
		if !seenPoint {
			point++
		}
	}
	exp := 0
	if i < len(lit) {
		i++
		eneg := false
		if lit[i] == '+' || lit[i] == '-' {
			eneg = lit[i] == '-'
			i++
		}
		for ; i < len(lit); i++ {
			exp = exp*10 + int(lit[i]-'0')
			if exp > maxPlain*2 {
				return dst, false
			}
		}
		if eneg {
			exp = -exp
		}
	}
	for nd > 0 && digits[nd-1] == '0' && nd > point+exp {
		nd--
	}
	if nd == 0 {
		return append(dst, '0'), true
	}
	point += exp
	width := max(point, nd) + max(-point, 0) + 2
	if width > maxPlain {
		return dst, false
	}
	if neg {
		dst = append(dst, '-')
	}
	switch {
	case point <= 0:
		dst = append(dst, '0', '.')
		for range -point {
			dst = append(dst, '0')
		}
		dst = append(dst, digits[:nd]...)
	case point >= nd:
		dst = append(dst, digits[:nd]...)
		for range point - nd {
			dst = append(dst, '0')
		}
	default:
		dst = append(dst, digits[:point]...)
		dst = append(dst, '.')
		dst = append(dst, digits[point:nd]...)
	}
	return dst, true
}
