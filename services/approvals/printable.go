package approvals

import (
	"fmt"
	"strings"
)

// Printable is a statement as approvers are shown it: control characters (a carriage
// return that makes a terminal print later text over earlier) and invisible or
// direction-changing characters (Trojan Source: text that reads otherwise than it runs)
// written as escapes, so that what an approver reads is what runs. Newlines and tabs stay.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if hidden(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r':
			b.WriteString(`\r`)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func hidden(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x061c, r == 0xfeff, r == 0x00ad:
		return true
	}
	return false
}
