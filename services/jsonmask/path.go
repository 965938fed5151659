package jsonmask

import (
	"fmt"
	"strconv"
	"strings"
)

// Step is one step of a Path.
type Step struct {
	Name    string // a member name ("" with Any or Index)
	Any     bool   // every member of an object or element of an array (.* or [*])
	Index   int    // an array element, with IsIndex
	IsIndex bool
	Deep    bool // ..name: at any depth below
}

// Path is a parsed field path: $ then steps.
type Path []Step

// maxIndex bounds [N]: a larger index is a typing error, not an element anyone means.
const maxIndex = 1<<31 - 1

// ParsePath parses a path: $ the whole document, .name or ['name'] a member, [*] or .*
// every element or member, [N] one element, ..name a member at any depth (also ..*,
// ..['name'], ..[N], ..[*]). A quoted name takes \' \" and \\ escapes; a dotted name
// cannot hold brackets, quotes, '*' or white space (quote it instead).
func ParsePath(s string) (Path, error) {
	if !strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("%q: a path starts with $", s)
	}
	var p Path
	i := 1
	for i < len(s) {
		deep := false
		switch {
		case strings.HasPrefix(s[i:], ".."):
			deep = true
			i += 2
		case s[i] == '.':
			i++
			if i < len(s) && s[i] == '[' {
				return nil, fmt.Errorf("%q: .[ at %d (write [...] without the dot)", s, i-1)
			}
		case s[i] == '[':
		default:
			return nil, fmt.Errorf("%q: unexpected %q at %d", s, s[i], i)
		}
		if i < len(s) && s[i] == '[' {
			st, n, err := parseBracket(s, i)
			if err != nil {
				return nil, err
			}
			st.Deep = deep
			p = append(p, st)
			i = n
			continue
		}
		j := i
		for j < len(s) && s[j] != '.' && s[j] != '[' {
			j++
		}
		name := s[i:j]
		if name == "" {
			return nil, fmt.Errorf("%q: empty member name at %d", s, i)
		}
		if name == "*" {
			p = append(p, Step{Any: true, Deep: deep})
		} else {
			if k := strings.IndexAny(name, "]'\"* \t\r\n"); k >= 0 {
				return nil, fmt.Errorf("%q: %q in member name %q (write ['...'])", s, name[k], name)
			}
			p = append(p, Step{Name: name, Deep: deep})
		}
		i = j
	}
	return p, nil
}

// parseBracket parses [*], [N] or ['name'] at s[i] == '[' and returns the index after ].
func parseBracket(s string, i int) (Step, int, error) {
	i++
	if i >= len(s) {
		return Step{}, 0, fmt.Errorf("%q: [ without ]", s)
	}
	switch c := s[i]; {
	case c == '*':
		if i+1 >= len(s) || s[i+1] != ']' {
			return Step{}, 0, fmt.Errorf("%q: [* without ]", s)
		}
		return Step{Any: true}, i + 2, nil
	case c == '\'' || c == '"':
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case c:
				if j+1 >= len(s) || s[j+1] != ']' {
					return Step{}, 0, fmt.Errorf("%q: quoted name not followed by ] at %d", s, j+1)
				}
				return Step{Name: b.String()}, j + 2, nil
			case '\\':
				if j+1 >= len(s) || !strings.ContainsRune(`'"\`, rune(s[j+1])) {
					return Step{}, 0, fmt.Errorf("%q: bad escape at %d (only \\' \\\" \\\\)", s, j)
				}
				j++
				b.WriteByte(s[j])
			default:
				b.WriteByte(s[j])
			}
		}
		return Step{}, 0, fmt.Errorf("%q: unterminated quoted name", s)
	default:
		j := strings.IndexByte(s[i:], ']')
		if j < 0 {
			return Step{}, 0, fmt.Errorf("%q: [ without ]", s)
		}
		in := s[i : i+j]
		if in == "" || strings.Trim(in, "0123456789") != "" {
			if strings.HasPrefix(in, "-") {
				return Step{}, 0, fmt.Errorf("%q: [%s]: negative indexes are not supported (a stream's end is not known in advance)", s, in)
			}
			return Step{}, 0, fmt.Errorf("%q: [%s] is not [*], [N] or ['name']", s, in)
		}
		n, err := strconv.Atoi(in)
		if err != nil || n > maxIndex {
			return Step{}, 0, fmt.Errorf("%q: [%s]: index out of range", s, in)
		}
		return Step{Index: n, IsIndex: true}, i + j + 1, nil
	}
}

// String returns the path in the syntax ParsePath reads: ParsePath(p.String()) is p.
func (p Path) String() string {
	var b strings.Builder
	b.WriteByte('$')
	for _, st := range p {
		if st.Deep {
			b.WriteString("..")
		}
		switch {
		case st.Any:
			if st.Deep {
				b.WriteByte('*')
			} else {
				b.WriteString("[*]")
			}
		case st.IsIndex:
			b.WriteString("[" + strconv.Itoa(st.Index) + "]")
		case plainName(st.Name):
			if !st.Deep {
				b.WriteByte('.')
			}
			b.WriteString(st.Name)
		default:
			b.WriteString("['")
			for i := 0; i < len(st.Name); i++ {
				if c := st.Name[i]; c == '\'' || c == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(st.Name[i])
			}
			b.WriteString("']")
		}
	}
	return b.String()
}

// plainName reports whether name can be written after a dot.
func plainName(name string) bool {
	return name != "" && !strings.ContainsAny(name, ".[]'\"* \t\r\n")
}
