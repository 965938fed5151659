// Words and options of a shell command: a word's literal value (quotes removed) or its
// text as written, and a program's options read as getopt and getopt_long read them.

package policy

import (
	"slices"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// shWord is a word of a command: its literal value, or as written when it is not a literal.
type shWord struct {
	val string
	lit bool
	// Of a word that is not a literal: one, it expands to exactly one word ("$x", not $x or
	// "$@"); head, the literal text it starts with ("-v$x": -v).
	one  bool
	head string
}

func textOf(n syntax.Node, src string) string {
	s, e := int(n.Pos().Offset()), int(n.End().Offset())
	if s < 0 || e > len(src) || s > e {
		return ""
	}
	return src[s:e]
}

func wordOf(w *syntax.Word, src string) shWord {
	if v, ok := literal(w); ok {
		return shWord{val: v, lit: true}
	}
	sw := shWord{val: textOf(w, src), one: true}
	for _, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			if strings.ContainsAny(p.Value, "*?[{~") {
				sw.one = false
			}
		case *syntax.SglQuoted:
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				if pe, ok := q.(*syntax.ParamExp); ok && (pe.Param != nil && pe.Param.Value == "@" || pe.Names != 0 || allIndex(pe.Index)) {
					sw.one = false // "$@", "${a[@]}", "${!p@}"
				}
			}
		default:
			sw.one = false // split, or globbed
		}
	}
	sw.head = wordHead(w)
	return sw
}

// wordHead is the literal text a word that is not a literal starts with, up to its first
// expansion, glob, brace or escape (a prefix of what it expands to, perhaps shorter).
func wordHead(w *syntax.Word) string {
	var head strings.Builder
	for i, p := range w.Parts {
		var lit string
		switch p := p.(type) {
		case *syntax.SglQuoted:
			if p.Dollar {
				return head.String()
			}
			head.WriteString(p.Value)
			continue
		case *syntax.Lit:
			lit = p.Value
			if i == 0 && strings.HasPrefix(lit, "~") {
				return ""
			}
			if j := strings.IndexAny(lit, "*?[{\\"); j >= 0 {
				return head.String() + lit[:j]
			}
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				l, ok := q.(*syntax.Lit)
				if !ok {
					return head.String()
				}
				if j := strings.IndexByte(l.Value, '\\'); j >= 0 {
					return head.String() + l.Value[:j]
				}
				head.WriteString(l.Value)
			}
			continue
		default:
			return head.String()
		}
		head.WriteString(lit)
	}
	return head.String()
}

// literal is the value of a word that expands to itself alone, quotes removed ("rm", \rm,
// r"m", 'r'm and $'\x72m' are all rm). A word with an expansion, a glob, a brace expansion
// or a leading tilde is not a literal.
func literal(w *syntax.Word) (string, bool) {
	var b, bare strings.Builder // bare: the unquoted characters, quoted ones as '_'
	for i, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.Lit:
			s := p.Value
			if i == 0 && strings.HasPrefix(s, "~") {
				return "", false
			}
			for j := 0; j < len(s); j++ {
				if s[j] != '\\' {
					b.WriteByte(s[j])
					bare.WriteByte(s[j])
					continue
				}
				if j++; j < len(s) && s[j] != '\n' {
					b.WriteByte(s[j])
					bare.WriteByte('_')
				}
			}
		case *syntax.SglQuoted, *syntax.DblQuoted:
			if dq, ok := p.(*syntax.DblQuoted); ok {
				for _, q := range dq.Parts {
					if _, ok := q.(*syntax.Lit); !ok {
						return "", false
					}
				}
			}
			v, err := expand.Literal(nil, &syntax.Word{Parts: []syntax.WordPart{p}})
			if err != nil {
				return "", false
			}
			b.WriteString(v)
			bare.WriteString(strings.Repeat("_", len(v)))
		default:
			return "", false
		}
	}
	u := bare.String()
	if strings.ContainsAny(u, "*?") {
		return "", false
	}
	if o := strings.IndexByte(u, '['); o >= 0 && strings.IndexByte(u[o:], ']') > 0 {
		return "", false
	}
	for o := 0; o < len(u); o++ {
		if u[o] != '{' {
			continue
		}
		// {a,b} and {1..3} expand to several words.
		if c := strings.IndexByte(u[o:], '}'); c > 0 && (strings.Contains(u[o:o+c], ",") || strings.Contains(u[o:o+c], "..")) {
			return "", false
		}
	}
	return b.String(), true
}

func joinWords(ws []shWord) (shWord, bool) {
	vals := make([]string, len(ws))
	for i, w := range ws {
		if !w.lit {
			return shWord{}, false
		}
		vals[i] = w.val
	}
	return shWord{val: strings.Join(vals, " "), lit: true}, true
}

func has(got []option, names ...string) (shWord, bool) {
	for _, o := range got {
		if slices.Contains(names, o.name) {
			return o.val, true
		}
	}
	return shWord{}, false
}

func quoteWords(ws []shWord, joined shWord) string {
	q := make([]string, 0, len(ws))
	for _, w := range ws {
		s, err := syntax.Quote(w.val, syntax.LangBash)
		if err != nil {
			return joined.val
		}
		q = append(q, s)
	}
	return strings.Join(q, " ")
}

// optSpec says how a program's options are read (getopt and getopt_long).
type optSpec struct {
	withArg  string   // short options with an argument, attached or the next word
	attached string   // short options whose optional argument is only attached (sed -i[SUFFIX])
	long     []string // long options with an argument, --name=value or --name value (any prefix)
	permute  bool     // options may follow operands (GNU); otherwise the first operand ends them
}

type option struct {
	name string
	val  shWord
}

// getopt splits words into operands and options. A word that is not a literal is an
// operand: what it expands to is not known.
func getopt(ws []shWord, o optSpec) (operands []shWord, got []option) {
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		if !w.lit || w.val == "-" || !strings.HasPrefix(w.val, "-") {
			if !o.permute {
				return append(operands, ws[i:]...), got
			}
			operands = append(operands, w)
			continue
		}
		if w.val == "--" {
			return append(operands, ws[i+1:]...), got
		}
		if name, ok := strings.CutPrefix(w.val, "--"); ok {
			name, val, hasVal := strings.Cut(name, "=")
			switch {
			case hasVal:
				got = append(got, option{name, shWord{val: val, lit: true}})
			case slices.ContainsFunc(o.long, func(l string) bool { return strings.HasPrefix(l, name) }) && i+1 < len(ws):
				i++
				got = append(got, option{name: longName(o.long, name), val: ws[i]})
			default:
				got = append(got, option{name: name})
			}
			continue
		}
		for j := 1; j < len(w.val); j++ {
			c := w.val[j]
			if strings.IndexByte(o.withArg, c) >= 0 {
				if j+1 < len(w.val) {
					got = append(got, option{string(c), shWord{val: w.val[j+1:], lit: true}})
				} else if i+1 < len(ws) {
					i++
					got = append(got, option{string(c), ws[i]})
				}
				break
			}
			if strings.IndexByte(o.attached, c) >= 0 {
				got = append(got, option{string(c), shWord{val: w.val[j+1:], lit: true}})
				break
			}
			got = append(got, option{name: string(c)})
		}
	}
	return operands, got
}

// longName is the long option a prefix abbreviates (getopt_long accepts any prefix).
func longName(long []string, prefix string) string {
	for _, l := range long {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return prefix
}
