// Package jsonmask masks fields of JSON documents as they stream, chosen by path, and
// runs content detectors over every other string, without holding a document whole.
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

// ParsePath parses a path: $ the whole document, .name or ['name'] a member, [*] or .*
// every element or member, [N] one element, ..name a member at any depth.
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
		case s[i] == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("%q: [ without ]", s)
			}
			in := s[i+1 : i+j]
			i += j + 1
			switch {
			case in == "*":
				p = append(p, Step{Any: true})
			case len(in) >= 2 && (in[0] == '\'' || in[0] == '"') && in[len(in)-1] == in[0]:
				p = append(p, Step{Name: in[1 : len(in)-1]})
			default:
				n, err := strconv.Atoi(in)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%q: [%s] is not [*], [N] or ['name']", s, in)
				}
				p = append(p, Step{Index: n, IsIndex: true})
			}
			continue
		default:
			return nil, fmt.Errorf("%q: unexpected %q at %d", s, s[i], i)
		}
		j := i
		for j < len(s) && s[j] != '.' && s[j] != '[' {
			j++
		}
		name := s[i:j]
		i = j
		if name == "" {
			return nil, fmt.Errorf("%q: empty member name", s)
		}
		if name == "*" {
			p = append(p, Step{Any: true, Deep: deep})
		} else {
			p = append(p, Step{Name: name, Deep: deep})
		}
	}
	return p, nil
}
