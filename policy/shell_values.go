// Code hidden in values: assignments that change what names run (PATH, LD_*, ...), and
// what bash evaluates beyond the text (arithmetic, builtins that take a variable name,
// ${!x}, ${x@P}, declare and test operands), marking the command dynamic.

package policy

import (
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// dangerousVars change what a program name runs, or run code of their own (and so does
// every LD_* and BASH_FUNC_* variable). BASH_CMDS is bash's table of where names run from,
// BASH_ALIASES its aliases; EXECIGNORE skips programs on the PATH.
var dangerousVars = []string{"PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "EXECIGNORE", "BASH_CMDS", "BASH_ALIASES", "GCONV_PATH"}

// integerVars are bash's variables with the integer attribute: a value assigned to one is
// evaluated as arithmetic (OPTIND='a[$(cmd)]' runs cmd).
var integerVars = []string{"OPTIND", "BASHPID", "HISTCMD", "RANDOM", "SRANDOM"}

func (a *shellAnalysis) assigns(name string) {
	if slices.Contains(dangerousVars, name) || strings.HasPrefix(name, "LD_") || strings.HasPrefix(name, "BASH_FUNC_") {
		a.info.Dynamic = true
	}
}

// assignments skips NAME=value words (env, sudo), noting dangerous ones.
func (a *shellAnalysis) assignments(ws []shWord) []shWord {
	for len(ws) > 0 && ws[0].lit {
		name, _, ok := strings.Cut(ws[0].val, "=")
		if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			break
		}
		a.assigns(name)
		ws = ws[1:]
	}
	return ws
}

// Bash evaluates code found in values, not only in the text: an array subscript in a
// variable name (printf -v 'x[$(cmd)]', read, declare, [[ -v ]]), a variable's value in
// arithmetic ($((x)) with x='a[$(cmd)]'), an indirect name (${!x}) and a prompt string
// (${x@P}). What such a command runs is not in its text: it is dynamic, unless what bash
// evaluates is provably inert (integer constants, plain names).

// isName: a literal that is a plain variable name (no subscript).
func isName(w shWord) bool {
	if !w.lit || w.val == "" || w.val[0] >= '0' && w.val[0] <= '9' {
		return false
	}
	return !strings.ContainsFunc(w.val, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

// intWord: a word whose value is an integer bash evaluates as nothing else: a number (10,
// 0x1f, 2#101) or $#, $?, $$, $!, ${#x}.
func intWord(w *syntax.Word) bool {
	if len(w.Parts) != 1 {
		return false
	}
	switch p := w.Parts[0].(type) {
	case *syntax.Lit:
		return p.Value != "" && p.Value[0] >= '0' && p.Value[0] <= '9' && !strings.ContainsFunc(p.Value, func(r rune) bool {
			return !(r == '_' || r == '#' || r == '@' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		})
	case *syntax.ParamExp:
		if p.Excl || p.Slice != nil || p.Repl != nil || p.Exp != nil || p.Names != 0 || p.Param == nil {
			return false
		}
		// The subscript of ${#a[i]} is checked as a parameter expansion of its own.
		return p.Length || p.Index == nil && strings.Contains("#?$!", p.Param.Value) && len(p.Param.Value) == 1
	}
	return false
}

// arith marks the command dynamic unless x is integer constants only: a name or an
// expansion in arithmetic is evaluated as arithmetic in turn, its subscripts expanded.
func (a *shellAnalysis) arith(x syntax.ArithmExpr) {
	if x != nil && !constArith(x) {
		a.info.Dynamic = true
	}
}

func constArith(x syntax.ArithmExpr) bool {
	switch x := x.(type) {
	case *syntax.BinaryArithm:
		return constArith(x.X) && constArith(x.Y)
	case *syntax.UnaryArithm:
		return constArith(x.X)
	case *syntax.ParenArithm:
		return constArith(x.X)
	case *syntax.Word:
		return intWord(x)
	}
	return false
}

// allIndex: the subscript [@] or [*], every element.
func allIndex(x syntax.ArithmExpr) bool {
	w, ok := x.(*syntax.Word)
	if !ok || len(w.Parts) != 1 {
		return false
	}
	l, ok := w.Parts[0].(*syntax.Lit)
	return ok && (l.Value == "@" || l.Value == "*")
}

// param checks a parameter expansion: its subscript and offsets are arithmetic; ${!x}
// expands the name x holds (x='a[$(cmd)]'); ${x@P} expands x as a prompt ($(cmd) runs);
// ${x:=v} assigns x.
func (a *shellAnalysis) param(p *syntax.ParamExp) {
	if p.Excl && p.Names == 0 && !allIndex(p.Index) {
		a.info.Dynamic = true // ${!x}; ${!p*} and ${!a[@]} only list names
	}
	if !allIndex(p.Index) {
		a.arith(p.Index)
	}
	if p.Slice != nil {
		a.arith(p.Slice.Offset)
		a.arith(p.Slice.Length)
	}
	if p.Exp == nil {
		return
	}
	switch p.Exp.Op {
	case syntax.AssignUnset, syntax.AssignUnsetOrNull:
		if p.Param != nil {
			a.assignsName(shWord{val: p.Param.Value, lit: true})
		}
	case syntax.OtherParamOps:
		// Q, E, U, u, L, a, A, K, k only quote, escape, change case or describe.
		if op, ok := literal(p.Exp.Word); !ok || len(op) != 1 || !strings.Contains("QEUuLaAKk", op) {
			a.info.Dynamic = true
		}
	}
}

// assignsName is a variable a builtin assigns by name (printf -v NAME, read NAME, ${NAME:=v}):
// a name that is not a plain one (x[$(cmd)]) or not a literal is dynamic, and so is one
// whose value is evaluated (OPTIND); the assignment counts as one (PATH).
func (a *shellAnalysis) assignsName(w shWord) {
	if !isName(w) || slices.Contains(integerVars, w.val) {
		a.info.Dynamic = true
		return
	}
	a.assigns(w.val)
}

// declClause checks declare, typeset, local, export and readonly: a word the parser could
// not split (quoted, or an expansion) is read by the builtin at run time.
func (a *shellAnalysis) declClause(n *syntax.DeclClause, src string) {
	ws := make([]shWord, 0, len(n.Args))
	arrays := n.Variant.Value != "export" && n.Variant.Value != "readonly"
	for _, as := range n.Args {
		if as.Name == nil {
			ws = append(ws, wordOf(as.Value, src))
			continue
		}
		// Names and values the parser saw are assignments (checked as such); only a value
		// that may be a quoted array, '(...)', is read as code by the builtin (so it stands
		// here as "NAME=(").
		if as.Value != nil && !as.Naked && mayOpenParen(as.Value) {
			ws = append(ws, shWord{val: as.Name.Value + "=(", lit: true})
		} else {
			ws = append(ws, shWord{val: as.Name.Value, lit: true})
		}
	}
	a.declWords(n.Variant.Value, ws, arrays)
}

// mayOpenParen: the value of w may start with "(".
func mayOpenParen(w *syntax.Word) bool {
	h := wordHead(w)
	if v, ok := literal(w); ok {
		h = v
	}
	return h == "" || h[0] == '('
}

// declWords checks the words of declare and its kin. Options: -n (a name reference, whose
// target is evaluated on every use), -i (values are arithmetic) and unknown ones are
// dynamic. Operands: a plain name, or NAME=value with a plain name; a subscript is
// evaluated (declare 'a[$(cmd)]=1'), and '(...)' is a quoted array assignment whose
// elements are expanded (declare -a x='($(cmd))', and declare x=... of an existing array).
// arrays: a value may be an array without -a (declare, typeset, local).
func (a *shellAnalysis) declWords(variant string, ws []shWord, arrays bool) {
	if variant == "nameref" {
		a.info.Dynamic = true
		return
	}
	opts := true
	for _, w := range ws {
		if !w.lit {
			a.info.Dynamic = true // may be an option, a subscript or an array
			return
		}
		if opts && w.val == "--" {
			opts = false
			continue
		}
		if opts && len(w.val) > 1 && (w.val[0] == '-' || w.val[0] == '+') {
			for _, c := range w.val[1:] {
				if !strings.ContainsRune("aAfFgprtxlu", c) && !(c == 'n' && variant == "export") {
					a.info.Dynamic = true
				}
				if c == 'a' || c == 'A' {
					arrays = true
				}
			}
			continue
		}
		opts = false
		name, val, hasVal := strings.Cut(w.val, "=")
		name = strings.TrimSuffix(name, "+")
		if !isName(shWord{val: name, lit: true}) || hasVal && arrays && strings.HasPrefix(val, "(") {
			a.info.Dynamic = true
			continue
		}
		if hasVal {
			a.assigns(name)
			if slices.Contains(integerVars, name) {
				a.info.Dynamic = true
			}
		}
	}
}

// builtinOpts reads a bash builtin's options: clustered, an option's argument attached or
// the next word, "--" ends them, as the first operand does. ok is false when a word that is
// not a literal stands where an option may: it may expand to one (-v NAME).
func builtinOpts(ws []shWord, withArg string) (got []option, ops []shWord, ok bool) {
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		if !w.lit {
			return got, ws[i:], w.head != "" && w.head[0] != '-'
		}
		if w.val == "--" {
			return got, ws[i+1:], true
		}
		if len(w.val) < 2 || w.val[0] != '-' {
			return got, ws[i:], true
		}
		for j := 1; j < len(w.val); j++ {
			c := w.val[j]
			if strings.IndexByte(withArg, c) < 0 {
				got = append(got, option{name: string(c)})
				continue
			}
			switch {
			case j+1 < len(w.val):
				got = append(got, option{string(c), shWord{val: w.val[j+1:], lit: true}})
			case i+1 < len(ws):
				i++
				got = append(got, option{string(c), ws[i]})
			default:
				got = append(got, option{name: string(c)})
			}
			break
		}
	}
	return got, nil, true
}

// builtin checks the bash builtins that take a variable name, evaluate their arguments or
// change what names run. Run with words appended (xargs), any of them is dynamic.
func (a *shellAnalysis) builtin(name string, args []shWord, ctx runCtx, depth int) {
	names := func(opts string, names ...string) ([]option, []shWord) {
		got, ops, ok := builtinOpts(args, opts)
		if !ok || ctx.appended {
			a.info.Dynamic = true
		}
		for _, o := range got {
			if slices.Contains(names, o.name) {
				a.assignsName(o.val)
			}
		}
		return got, ops
	}
	switch name {
	case "printf":
		names("v", "v")
	case "read":
		got, ops := names("adinNptu", "a")
		if _, ok := has(got, "e"); ok {
			a.info.Dynamic = true // readline: its bindings expand and run what is typed
		}
		for _, w := range ops {
			a.assignsName(w)
		}
	case "mapfile", "readarray":
		got, ops := names("dnOscuC")
		if c, ok := has(got, "C"); ok {
			a.scriptWord(c, name+" -C", depth)
			a.info.Dynamic = true // run with every line read
		}
		for _, w := range ops {
			a.assignsName(w)
		}
	case "unset":
		got, ops := names("")
		_, fn := has(got, "f")
		for _, w := range ops {
			if fn && w.lit {
				continue
			}
			a.assignsName(w)
		}
	case "wait":
		names("p", "p")
	case "getopts":
		if len(args) < 2 || !args[0].lit || ctx.appended {
			a.info.Dynamic = true
		} else {
			a.assignsName(args[1])
		}
	case "test", "[":
		if name == "[" && len(args) > 0 && args[len(args)-1].lit && args[len(args)-1].val == "]" {
			args = args[:len(args)-1]
		}
		if ctx.appended || !testInert(args) {
			a.info.Dynamic = true
		}
	case "declare", "typeset", "local", "export", "readonly":
		if ctx.appended {
			a.info.Dynamic = true
		}
		a.declWords(name, args, name != "export" && name != "readonly")
	case "set":
		a.setOpts(args)
	case "hash":
		if got, _ := names("pdt"); slices.ContainsFunc(got, func(o option) bool { return o.name == "p" }) {
			a.info.Dynamic = true // hash -p FILE NAME: NAME runs FILE
		}
	case "let", "enable", "fc", "compgen":
		// let: arithmetic; enable -f: loads a builtin; fc: runs history; compgen -W/-C/-F.
		a.info.Dynamic = true
	}
}

// testBinary are test's binary operators: none evaluates its operands (test, unlike [[ ]],
// takes only decimal integers).
var testBinary = []string{"=", "==", "!=", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-nt", "-ot", "-ef", "-a", "-o"}

// testInert: test (or [) with these arguments evaluates no name: -v NAME and -R NAME only
// with a plain name, read as bash reads them by their number.
func testInert(args []shWord) bool {
	for _, w := range args {
		if !w.lit && !w.one {
			return false // splits into words that may be operators
		}
	}
	is := func(w shWord, v string) bool { return w.lit && w.val == v }
	names := func(w shWord) bool { return is(w, "-v") || is(w, "-R") }
	switch len(args) {
	case 0, 1:
		return true
	case 2:
		return is(args[0], "!") || args[0].lit && (!names(args[0]) || isName(args[1]))
	case 3:
		if args[1].lit && slices.Contains(testBinary, args[1].val) || is(args[0], "(") && is(args[2], ")") {
			return true
		}
		if is(args[0], "!") {
			return testInert(args[1:])
		}
	case 4:
		if is(args[0], "!") {
			return testInert(args[1:])
		}
		if is(args[0], "(") && is(args[3], ")") {
			return testInert(args[1:3])
		}
	}
	for i, w := range args {
		if !w.lit || names(w) && (i+1 == len(args) || !isName(args[i+1])) {
			return false
		}
	}
	return true
}

// setOpts: set -k (keyword) makes NAME=value words anywhere assignments (ls PATH=/tmp/x runs
// /tmp/x/ls).
func (a *shellAnalysis) setOpts(args []shWord) {
	for i := 0; i < len(args); i++ {
		w := args[i]
		if !w.lit {
			if w.head == "" || w.head[0] == '-' || w.head[0] == '+' {
				a.info.Dynamic = true
			}
			return
		}
		if w.val == "--" || w.val == "-" || len(w.val) < 2 || w.val[0] != '-' && w.val[0] != '+' {
			return
		}
		for _, c := range w.val[1:] {
			switch c {
			case 'k':
				a.info.Dynamic = true
			case 'o':
				if i+1 < len(args) {
					i++
					if o := args[i]; !o.lit || o.val == "keyword" {
						a.info.Dynamic = true
					}
				}
			}
		}
	}
}
