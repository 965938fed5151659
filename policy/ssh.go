package policy

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/gatehouse/gatehouse/schemas"
)

// Bounds of the shell analysis. Past any of them the command is refused whole (fail closed).
const (
	// maxShellDepth bounds commands run by commands: a wrapper (sudo, env, xargs, ...) or a
	// script parsed again (bash -c, eval, su -c, ssh host cmd) is one level.
	maxShellDepth = 16
	// maxCommandBytes is Linux's MAX_ARG_STRLEN: sshd runs `$SHELL -c command`, and a longer
	// argument cannot be executed at all.
	maxCommandBytes = 128 << 10
	// maxParseStack bounds the stack the shell parser could need for one text: it recurses
	// once per level of nesting (about 4 KB for a parenthesis in arithmetic), and a stack
	// overflow would end the process, not the request.
	maxParseStack = 32 << 20
	// maxShellWork bounds the syntax nodes walked and maxShellBytes the text parsed, over
	// every script of one command.
	maxShellWork  = 1 << 20
	maxShellBytes = 1 << 20
)

// ShellCommand is one command a command line runs.
type ShellCommand struct {
	// Program is the command name as the shell passes it to exec (quotes removed), or as
	// written when it is not a literal.
	Program string
	// Name is the program's base name after path.Clean (/bin/../bin/rm: rm).
	Name string
	// Args are the words after the program: literal values, or as written.
	Args []string
	// Dynamic: the program or an argument is not a literal ($VAR, $(...), a glob, a brace
	// or tilde expansion, words xargs or find -exec fill in).
	Dynamic bool
}

// ShellInfo is what an SSH exec command runs, parsed as bash parses it
// (mvdan.cc/sh/v3/syntax), wrappers and scripts in strings seen through.
type ShellInfo struct {
	Commands     []ShellCommand
	Programs     []string // base names of every program run, deduplicated, in order
	FilesWritten []string
	FilesRead    []string
	// HasSubstitution: $(...), backticks, <(...) or >(...).
	HasSubstitution bool
	Pipes           bool
	Background      bool
	// Dynamic: what runs depends on more than the text: a program name that is not a
	// literal, a script that is (bash -c "$X", eval $X, a shell reading its input or a
	// file, source), or an assignment that changes what a name runs (PATH, LD_PRELOAD, ...).
	Dynamic    bool
	ParseError string

	tooComplex bool // past a bound: refused whatever the rules say
}

// AnalyzeShell parses an SSH exec command.
func AnalyzeShell(command string) ShellInfo {
	a := &shellAnalysis{info: ShellInfo{Commands: []ShellCommand{}, Programs: []string{}, FilesWritten: []string{}, FilesRead: []string{}}}
	if len(command) > maxCommandBytes {
		a.fail(true, fmt.Sprintf("the command is %d bytes, over the %d bytes a host can execute", len(command), maxCommandBytes))
	} else {
		a.script(command, "", 0)
	}
	if a.info.ParseError != "" {
		// What did parse says nothing about what the command does as a whole.
		a.info = ShellInfo{Commands: []ShellCommand{}, Programs: []string{}, FilesWritten: []string{}, FilesRead: []string{}, ParseError: a.info.ParseError, tooComplex: a.info.tooComplex}
	}
	return a.info
}

type shellAnalysis struct {
	info  ShellInfo
	stop  bool
	work  int
	bytes int
}

func (a *shellAnalysis) fail(bound bool, msg string) {
	if !a.stop {
		a.stop, a.info.ParseError, a.info.tooComplex = true, msg, bound
	}
}

// script parses src and walks it; where names what runs it ("bash -c"), "" at the top.
func (a *shellAnalysis) script(src, where string, depth int) {
	if a.stop {
		return
	}
	if depth > maxShellDepth {
		a.fail(true, fmt.Sprintf("too deeply nested: more than %d levels of commands run by commands", maxShellDepth))
		return
	}
	a.bytes += len(src)
	if a.bytes > maxShellBytes || parseStack(src) > maxParseStack {
		a.fail(true, "too long to analyse: the command nests or repeats too much")
		return
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), "")
	if err != nil {
		if where != "" {
			a.fail(false, fmt.Sprintf("the script of %s does not parse: %v", where, err))
		} else {
			a.fail(false, err.Error())
		}
		return
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		if a.stop {
			return false
		}
		if a.work++; a.work > maxShellWork {
			a.fail(true, "too long to analyse: the command nests or repeats too much")
			return false
		}
		switch n := n.(type) {
		case *syntax.Stmt:
			if n.Background || n.Coprocess || n.Disown {
				a.info.Background = true
			}
			if c, ok := n.Cmd.(*syntax.CallExpr); ok && len(c.Args) > 0 {
				ws := make([]shWord, len(c.Args))
				for i, w := range c.Args {
					ws[i] = wordOf(w, src)
				}
				a.run(ws, runCtx{stdin: stdinOf(n.Redirs, src)}, depth)
			}
		case *syntax.BinaryCmd:
			if n.Op == syntax.Pipe || n.Op == syntax.PipeAll {
				a.info.Pipes = true
			}
		case *syntax.CmdSubst, *syntax.ProcSubst:
			a.info.HasSubstitution = true
		case *syntax.CoprocClause:
			a.info.Background = true
			if n.Name != nil {
				a.assignsName(wordOf(n.Name, src)) // coproc NAME sets the array NAME
			}
		case *syntax.WordIter:
			a.assignsName(shWord{val: n.Name.Value, lit: true}) // for NAME in, select NAME in
		case *syntax.Redirect:
			if n.N != nil && strings.HasPrefix(n.N.Value, "{") && strings.HasSuffix(n.N.Value, "}") {
				a.assignsName(shWord{val: n.N.Value[1 : len(n.N.Value)-1], lit: true}) // {NAME}>file
			}
			a.redirect(n, src)
		case *syntax.Assign:
			if n.Name != nil {
				a.assigns(n.Name.Value)
				if slices.Contains(integerVars, n.Name.Value) && (n.Value == nil || n.Append || !intWord(n.Value)) {
					a.info.Dynamic = true // OPTIND='a[$(cmd)]' is evaluated
				}
			}
			a.arith(n.Index)
		case *syntax.ArrayElem:
			a.arith(n.Index)
		case *syntax.ArithmExp:
			a.arith(n.X)
		case *syntax.ArithmCmd:
			a.arith(n.X)
		case *syntax.CStyleLoop:
			a.arith(n.Init)
			a.arith(n.Cond)
			a.arith(n.Post)
		case *syntax.ParamExp:
			a.param(n)
		case *syntax.BinaryTest:
			switch n.Op {
			case syntax.TsEql, syntax.TsNeq, syntax.TsLeq, syntax.TsGeq, syntax.TsLss, syntax.TsGtr:
				// [[ X -eq Y ]] evaluates both sides as arithmetic.
				for _, x := range []syntax.TestExpr{n.X, n.Y} {
					if w, ok := x.(*syntax.Word); !ok || !intWord(w) {
						a.info.Dynamic = true
					}
				}
			}
		case *syntax.UnaryTest:
			if n.Op == syntax.TsVarSet || n.Op == syntax.TsRefVar {
				// [[ -v 'x[$(cmd)]' ]] evaluates the subscript.
				if w, ok := n.X.(*syntax.Word); !ok || !isName(wordOf(w, src)) {
					a.info.Dynamic = true
				}
			}
		case *syntax.DeclClause:
			cmd := ShellCommand{Program: n.Variant.Value, Name: n.Variant.Value, Args: []string{}}
			for _, as := range n.Args {
				cmd.Args = append(cmd.Args, textOf(as, src))
			}
			a.add(cmd)
			a.declClause(n, src)
		case *syntax.LetClause:
			cmd := ShellCommand{Program: "let", Name: "let", Args: []string{}}
			for _, x := range n.Exprs {
				cmd.Args = append(cmd.Args, textOf(x, src))
				a.arith(x)
			}
			a.add(cmd)
		}
		return true
	})
}

// parseStack bounds the parser's stack for s: each level of nesting needs one of these bytes
// or keywords, and costs at most what it is counted here (measured, with a margin).
func parseStack(s string) int {
	cost, start := 0, -1
	for i := 0; i <= len(s); i++ {
		var c byte
		if i < len(s) {
			c = s[i]
		}
		if c >= 'a' && c <= 'z' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			switch s[start:i] {
			case "if", "then", "elif", "else", "while", "until", "for", "select", "case", "do", "time", "coproc", "function":
				cost += 2048
			}
			start = -1
		}
		switch {
		case c == '(' || c == '[' || c == '{' || c == '`':
			cost += 4096
		case c > ' ' && c < 0x7f && !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c == '_' || c == '/' || c == '.'):
			cost += 640
		}
	}
	return cost
}

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

// stdin is what a command reads on its standard input, when the command line gives it.
type stdin struct {
	script string
	lit    bool // a here-document, or here-string, that is a literal
}

func stdinOf(rs []*syntax.Redirect, src string) stdin {
	var in stdin
	for _, r := range rs {
		switch r.Op {
		case syntax.Hdoc, syntax.DashHdoc:
			in = stdin{}
			quoted := slices.ContainsFunc(r.Word.Parts, func(p syntax.WordPart) bool { _, ok := p.(*syntax.Lit); return !ok }) ||
				strings.Contains(textOf(r.Word, src), `\`)
			var b strings.Builder
			in.lit = true
			if r.Hdoc != nil {
				for _, p := range r.Hdoc.Parts {
					l, ok := p.(*syntax.Lit)
					if !ok || !quoted && strings.Contains(l.Value, `\`) {
						in.lit = false
						break
					}
					b.WriteString(l.Value)
				}
			}
			in.script = b.String()
		case syntax.WordHdoc:
			v, ok := literal(r.Word)
			in = stdin{script: v + "\n", lit: ok}
		case syntax.RdrIn, syntax.RdrInOut, syntax.DplIn:
			in = stdin{}
		}
	}
	return in
}

type runCtx struct {
	stdin    stdin
	appended bool // more arguments are appended when it runs (xargs)
}

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

func (a *shellAnalysis) add(c ShellCommand) {
	a.info.Commands = append(a.info.Commands, c)
	if !slices.Contains(a.info.Programs, c.Name) {
		a.info.Programs = append(a.info.Programs, c.Name)
	}
}

// programName is the base name of a program path: /bin/../bin/rm is rm.
func programName(p string) string {
	if p == "" {
		return ""
	}
	return path.Base(path.Clean(p))
}

// run records the command ws runs, and what it runs in turn.
func (a *shellAnalysis) run(ws []shWord, ctx runCtx, depth int) {
	if len(ws) == 0 || a.stop {
		return
	}
	if depth > maxShellDepth {
		a.fail(true, fmt.Sprintf("too deeply nested: more than %d levels of commands run by commands", maxShellDepth))
		return
	}
	cmd := ShellCommand{Program: ws[0].val, Name: ws[0].val, Args: make([]string, 0, len(ws)-1), Dynamic: ctx.appended || !ws[0].lit}
	if ws[0].lit {
		cmd.Name = programName(ws[0].val)
	} else {
		a.info.Dynamic = true
	}
	for _, w := range ws[1:] {
		cmd.Args = append(cmd.Args, w.val)
		cmd.Dynamic = cmd.Dynamic || !w.lit
	}
	a.add(cmd)
	if ws[0].lit {
		a.wrapped(cmd.Name, ws[1:], ctx, depth+1)
		a.files(cmd.Name, ws[1:])
		a.builtin(cmd.Name, ws[1:], ctx, depth+1)
	}
}

// script runs a word as a script (bash -c, su -c, eval, ...).
func (a *shellAnalysis) scriptWord(w shWord, where string, depth int) {
	if !w.lit {
		a.info.Dynamic = true
		return
	}
	a.script(w.val, where, depth)
}

// stdinScript is a shell reading its script from its input: seen when a here-document
// gives it, otherwise unknown.
func (a *shellAnalysis) stdinScript(ctx runCtx, where string, depth int) {
	if ctx.stdin.lit && !ctx.appended {
		a.script(ctx.stdin.script, where, depth)
		return
	}
	a.info.Dynamic = true
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

var shells = []string{"sh", "bash", "rbash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"}

// wrapped follows programs whose arguments are themselves a command or a script.
func (a *shellAnalysis) wrapped(name string, args []shWord, ctx runCtx, depth int) {
	inner := runCtx{stdin: ctx.stdin, appended: ctx.appended}
	switch {
	case slices.Contains(shells, name):
		a.shell(name, args, ctx, depth)
	case name == "eval":
		if w, ok := joinWords(args); ok && !ctx.appended {
			a.script(w.val, "eval", depth)
		} else {
			a.info.Dynamic = true
		}
	case name == "sudo" || name == "doas":
		ops, got := getopt(args, optSpec{withArg: "aCcDgpRrTtUu", long: []string{"user", "group", "chdir", "chroot", "prompt", "close-from", "login-class", "role", "type", "command-timeout", "other-user", "auth-type"}})
		if _, ok := has(got, "e", "edit"); ok && name == "sudo" {
			a.written(ops)
			return
		}
		ops = a.assignments(ops)
		if len(ops) == 0 {
			if _, ok := has(got, "s", "i", "shell", "login"); ok {
				a.stdinScript(ctx, name+" -s", depth)
			} else if ctx.appended {
				a.info.Dynamic = true
			}
			return
		}
		a.run(ops, inner, depth)
	case name == "sudoedit":
		a.written(args)
	case name == "env":
		ops, got := getopt(args, optSpec{withArg: "uCS", long: []string{"unset", "chdir", "split-string"}})
		if s, ok := has(got, "S", "split-string"); ok {
			// env -S splits its string into words: approximated by the shell's splitting.
			rest, lit := joinWords(ops)
			if !s.lit || !lit || ctx.appended {
				a.info.Dynamic = true
				return
			}
			a.script(s.val+" "+quoteWords(ops, rest), "env -S", depth)
			return
		}
		a.runOrAppended(a.assignments(ops), inner, depth)
	case name == "nohup" || name == "builtin" || name == "busybox":
		a.runOrAppended(args, inner, depth)
	case name == "command":
		ops, _ := getopt(args, optSpec{})
		a.runOrAppended(ops, inner, depth)
	case name == "exec":
		ops, _ := getopt(args, optSpec{withArg: "a"})
		a.runOrAppended(ops, inner, depth)
	case name == "setsid":
		ops, _ := getopt(args, optSpec{})
		a.runOrAppended(ops, inner, depth)
	case name == "nice":
		ops, _ := getopt(args, optSpec{withArg: "n", long: []string{"adjustment"}})
		a.runOrAppended(ops, inner, depth)
	case name == "stdbuf":
		ops, _ := getopt(args, optSpec{withArg: "ioe", long: []string{"input", "output", "error"}})
		a.runOrAppended(ops, inner, depth)
	case name == "ionice":
		ops, _ := getopt(args, optSpec{withArg: "cnpPu", long: []string{"class", "classdata", "pid", "pgid", "uid"}})
		a.runOrAppended(ops, inner, depth)
	case name == "time":
		ops, got := getopt(args, optSpec{withArg: "of", long: []string{"output", "format"}})
		if f, ok := has(got, "o", "output"); ok {
			a.written([]shWord{f})
		}
		a.runOrAppended(ops, inner, depth)
	case name == "timeout":
		ops, _ := getopt(args, optSpec{withArg: "ks", long: []string{"kill-after", "signal"}})
		if len(ops) > 0 {
			a.runOrAppended(ops[1:], inner, depth)
		}
	case name == "chroot":
		ops, _ := getopt(args, optSpec{long: []string{"userspec", "groups"}})
		if len(ops) > 1 {
			a.run(ops[1:], inner, depth)
		} else {
			a.stdinScript(ctx, "chroot", depth) // chroot DIR runs an interactive shell
		}
	case name == "xargs":
		a.xargs(args, depth)
	case name == "su" || name == "runuser":
		_, got := getopt(args, optSpec{withArg: "cgGswC", long: []string{"command", "session-command", "shell", "group", "supp-group", "whitelist-environment"}, permute: true})
		if c, ok := has(got, "c", "C", "command", "session-command"); ok {
			a.scriptWord(c, name+" -c", depth)
		} else {
			a.stdinScript(ctx, name, depth)
		}
	case name == "ssh":
		a.ssh(args, depth)
	case name == "find":
		a.find(args, depth)
	case name == "watch":
		ops, got := getopt(args, optSpec{withArg: "nq", long: []string{"interval", "equexit"}})
		if _, ok := has(got, "x", "exec"); ok {
			a.run(ops, runCtx{}, depth)
		} else if w, ok := joinWords(ops); ok {
			a.script(w.val, "watch", depth)
		} else {
			a.info.Dynamic = true
		}
	case name == "flock":
		ops, got := getopt(args, optSpec{withArg: "wEc", long: []string{"timeout", "conflict-exit-code", "command"}})
		if c, ok := has(got, "c", "command"); ok {
			a.scriptWord(c, "flock -c", depth)
		} else if len(ops) > 2 && ops[1].lit && (ops[1].val == "-c" || ops[1].val == "--command") {
			a.scriptWord(ops[2], "flock -c", depth)
		} else if len(ops) > 1 {
			a.run(ops[1:], inner, depth)
		}
	case name == "trap":
		ops, _ := getopt(args, optSpec{})
		if len(ops) > 1 && !(ops[0].lit && ops[0].val == "-") {
			a.scriptWord(ops[0], "trap", depth)
		}
	case name == "alias":
		for _, w := range args {
			if !w.lit {
				a.info.Dynamic = true
				continue
			}
			if _, body, ok := strings.Cut(w.val, "="); ok {
				a.script(body, "alias", depth)
			}
		}
	case name == "source" || name == ".":
		a.info.Dynamic = true
	}
}

// runOrAppended runs ops; with none, the command is what xargs appends: unknown.
func (a *shellAnalysis) runOrAppended(ops []shWord, ctx runCtx, depth int) {
	if len(ops) == 0 {
		if ctx.appended {
			a.info.Dynamic = true
		}
		return
	}
	a.run(ops, ctx, depth)
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

// shell follows sh -c 'script', and a shell reading a here-document. A shell running a
// file or its input runs what the command does not say: dynamic.
func (a *shellAnalysis) shell(name string, args []shWord, ctx runCtx, depth int) {
	cflag, sflag, i := false, false, 0
	for ; i < len(args); i++ {
		w := args[i]
		if !w.lit || !strings.HasPrefix(w.val, "-") && !strings.HasPrefix(w.val, "+") {
			break
		}
		if w.val == "--" || w.val == "-" {
			i++
			break
		}
		if strings.HasPrefix(w.val, "--") {
			if w.val == "--rcfile" || w.val == "--init-file" {
				i++
			}
			continue
		}
		for _, c := range w.val[1:] {
			switch c {
			case 'c':
				cflag = true
			case 's':
				sflag = true
			case 'k':
				a.info.Dynamic = true // keyword: NAME=value words anywhere are assignments
			case 'o', 'O':
				i++
				if c == 'o' && i < len(args) && (!args[i].lit || args[i].val == "keyword") {
					a.info.Dynamic = true
				}
			}
		}
	}
	ops := args[min(i, len(args)):]
	switch {
	case cflag && len(ops) > 0:
		a.scriptWord(ops[0], name+" -c", depth)
	case cflag:
		if ctx.appended {
			a.info.Dynamic = true
		}
	case len(ops) == 0 || sflag:
		a.stdinScript(ctx, name, depth)
	default:
		a.info.Dynamic = true // a script file
	}
}

func (a *shellAnalysis) xargs(args []shWord, depth int) {
	ops, got := getopt(args, optSpec{withArg: "adEILnPs", attached: "eil", long: []string{"arg-file", "delimiter", "eof", "max-lines", "max-args", "max-procs", "max-chars", "process-slot-var"}})
	replace := ""
	for _, o := range got {
		switch o.name {
		case "I", "replace", "i":
			replace = o.val.val
			if replace == "" {
				replace = "{}"
			}
		case "a", "arg-file":
			a.read([]shWord{o.val})
		}
	}
	if len(ops) == 0 {
		ops = []shWord{{val: "echo", lit: true}}
	}
	if replace != "" {
		ops = slices.Clone(ops)
		for i, w := range ops {
			if strings.Contains(w.val, replace) {
				ops[i].lit = false
			}
		}
	}
	a.run(ops, runCtx{appended: replace == ""}, depth)
}

func (a *shellAnalysis) ssh(args []shWord, depth int) {
	spec := optSpec{withArg: "BbcDEeFIiJLlmOoPpQRSWw"}
	ops, got := getopt(args, spec)
	if len(ops) == 0 {
		return
	}
	// ssh reads options after the destination too; the command starts at the next operand.
	ops, more := getopt(ops[1:], spec)
	noCommand := false
	for _, o := range append(got, more...) {
		switch o.name {
		case "o":
			if !o.val.lit {
				a.info.Dynamic = true
				continue
			}
			key, val, _ := strings.Cut(strings.TrimSpace(o.val.val), "=")
			if k, v, ok := strings.Cut(key, " "); ok && !strings.Contains(o.val.val, "=") {
				key, val = k, v
			}
			switch strings.ToLower(strings.TrimSpace(key)) {
			case "proxycommand", "localcommand", "knownhostscommand", "remotecommand":
				a.script(strings.TrimSpace(val), "ssh -o "+key, depth)
			}
		case "N", "W":
			noCommand = true
		}
	}
	if len(ops) == 0 {
		// A remote interactive shell runs what is typed there.
		a.info.Dynamic = a.info.Dynamic || !noCommand
		return
	}
	if w, ok := joinWords(ops); ok {
		a.script(w.val, "ssh", depth)
	} else {
		a.info.Dynamic = true
	}
}

func (a *shellAnalysis) find(args []shWord, depth int) {
	for i := 0; i < len(args); i++ {
		if !args[i].lit {
			continue
		}
		switch args[i].val {
		case "-exec", "-execdir", "-ok", "-okdir":
			var cmd []shWord
			for i++; i < len(args) && !(args[i].lit && (args[i].val == ";" || args[i].val == "+")); i++ {
				w := args[i]
				if strings.Contains(w.val, "{}") {
					w.lit = false // a file name
				}
				cmd = append(cmd, w)
			}
			a.run(cmd, runCtx{}, depth)
		case "-fprint", "-fprint0", "-fprintf", "-fls":
			if i+1 < len(args) {
				i++
				a.written(args[i : i+1])
			}
		}
	}
}

// files records the files a program writes or reads, where its arguments say so.
func (a *shellAnalysis) files(name string, args []shWord) {
	switch name {
	case "tee":
		ops, _ := getopt(args, optSpec{permute: true})
		a.written(ops)
	case "cp", "mv", "install", "ln":
		ops, got := getopt(args, optSpec{withArg: "gmoSt", long: []string{"target-directory", "suffix", "mode", "owner", "group"}, permute: true})
		if _, ok := has(got, "d", "directory"); ok && name == "install" {
			a.written(ops)
			return
		}
		dest := -1
		if t, ok := has(got, "t", "target-directory"); ok {
			a.written([]shWord{t})
		} else if len(ops) >= 2 {
			dest = len(ops) - 1
			a.written(ops[dest:])
		}
		srcs := ops
		if dest >= 0 {
			srcs = ops[:dest]
		}
		switch name {
		case "mv":
			a.written(srcs) // moved away
		case "cp", "install":
			a.read(srcs)
		}
	case "dd":
		for _, w := range args {
			if f, ok := strings.CutPrefix(w.val, "of="); ok {
				a.written([]shWord{{val: f, lit: w.lit}})
			} else if f, ok := strings.CutPrefix(w.val, "if="); ok {
				a.read([]shWord{{val: f, lit: w.lit}})
			}
		}
	case "sed":
		ops, got := getopt(args, optSpec{withArg: "efl", attached: "i", long: []string{"expression", "file", "line-length"}, permute: true})
		if _, ok := has(got, "e", "f", "expression", "file"); !ok && len(ops) > 0 {
			ops = ops[1:]
		}
		if _, ok := has(got, "i", "in-place"); ok {
			a.written(ops)
		} else {
			a.read(ops)
		}
	case "touch", "truncate":
		ops, _ := getopt(args, optSpec{withArg: "dtrs", long: []string{"date", "reference", "time", "size"}, permute: true})
		a.written(ops)
	case "sort":
		_, got := getopt(args, optSpec{withArg: "kotTS", long: []string{"key", "output", "field-separator", "temporary-directory", "buffer-size"}, permute: true})
		if o, ok := has(got, "o", "output"); ok {
			a.written([]shWord{o})
		}
	case "curl", "wget":
		long, short := "output", byte('o')
		if name == "wget" {
			long, short = "output-document", 'O'
		}
		for i, w := range args {
			switch {
			case !w.lit || !strings.HasPrefix(w.val, "-"):
			case w.val == "--"+long && i+1 < len(args):
				a.written(args[i+1 : i+2])
			case strings.HasPrefix(w.val, "--"+long+"="):
				a.written([]shWord{{val: w.val[len(long)+3:], lit: true}})
			case !strings.HasPrefix(w.val, "--"):
				if k := strings.IndexByte(w.val, short); k > 0 && k == len(w.val)-1 && i+1 < len(args) {
					a.written(args[i+1 : i+2])
				} else if k > 0 {
					a.written([]shWord{{val: w.val[k+1:], lit: true}})
				}
			}
		}
	case "cat", "tac", "less", "more", "nl", "head", "tail":
		ops, _ := getopt(args, optSpec{withArg: "nc", long: []string{"lines", "bytes"}, permute: true})
		a.read(ops)
	case "source", ".":
		if len(args) > 0 {
			a.read(args[:1])
		}
	}
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

// fileName is a file as the rules see it: a literal path cleaned (/etc/../etc/passwd is
// /etc/passwd), anything else as written.
func fileName(w shWord) string {
	if w.lit && w.val != "" {
		return path.Clean(w.val)
	}
	return w.val
}

func (a *shellAnalysis) written(ws []shWord) {
	for _, w := range ws {
		if f := fileName(w); f != "" && !slices.Contains(a.info.FilesWritten, f) {
			a.info.FilesWritten = append(a.info.FilesWritten, f)
		}
	}
}

func (a *shellAnalysis) read(ws []shWord) {
	for _, w := range ws {
		if f := fileName(w); f != "" && f != "-" && !slices.Contains(a.info.FilesRead, f) {
			a.info.FilesRead = append(a.info.FilesRead, f)
		}
	}
}

func (a *shellAnalysis) redirect(r *syntax.Redirect, src string) {
	if r.Word == nil {
		return
	}
	w := wordOf(r.Word, src)
	switch r.Op {
	case syntax.RdrOut, syntax.AppOut, syntax.RdrClob, syntax.AppClob, syntax.RdrAll, syntax.RdrAllClob, syntax.AppAll, syntax.AppAllClob:
		a.written([]shWord{w})
	case syntax.RdrInOut:
		a.written([]shWord{w})
		a.read([]shWord{w})
	case syntax.RdrIn:
		a.read([]shWord{w})
	case syntax.DplOut:
		// >&2 duplicates a descriptor; >&file (bash) writes a file.
		if w.lit && w.val != "-" && strings.Trim(w.val, "0123456789-") == "" {
			return
		}
		a.written([]shWord{w})
	}
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

// clip cuts s to at most n bytes on a UTF-8 boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// sshValues is request.ssh: every field present, empty when the request has none.
func sshValues(s *schemas.SSHRequest, info *ShellInfo) map[string]any {
	sftp := map[string]any{"op": "", "path": "", "target": ""}
	if s.SFTP != nil {
		sftp = map[string]any{"op": s.SFTP.Op, "path": cleanPath(s.SFTP.Path), "target": cleanPath(s.SFTP.Target)}
	}
	cmds := make([]any, 0, len(info.Commands))
	for _, c := range info.Commands {
		cmds = append(cmds, map[string]any{"program": c.Program, "name": c.Name, "args": nonNil(c.Args), "dynamic": c.Dynamic})
	}
	return map[string]any{
		"login": s.Login, "channel": s.Channel, "request": s.Request, "command": s.Command, "subsystem": s.Subsystem,
		"term": s.Term, "env": map[string]any{"name": s.EnvName, "value": s.EnvValue}, "host": s.Host, "port": int64(s.Port),
		"sftp": sftp, "commands": cmds, "programs": nonNil(info.Programs), "files_written": nonNil(info.FilesWritten),
		"files_read": nonNil(info.FilesRead), "has_substitution": info.HasSubstitution, "pipes": info.Pipes,
		"background": info.Background, "dynamic": info.Dynamic, "parse_error": info.ParseError,
	}
}

// cleanPath is an sftp path as the rules see it: /srv/../etc is /etc.
func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return path.Clean(p)
}

// decideSSH decides a channel, a channel request or an sftp operation. An exec command is
// parsed first; one past the analysis' bounds is refused whatever the rules say.
func (e *Engine) decideSSH(req *Input, now time.Time) schemas.DecisionReply {
	s := req.SSH
	d := schemas.DecisionReply{Revision: e.revision}
	info := ShellInfo{}
	if s.Request == "exec" {
		info = AnalyzeShell(s.Command)
		if info.tooComplex {
			d.Effect, d.Policy, d.Rule = schemas.EffectDeny, "gatehouse", "command-depth"
			d.Reason = "the command is not decided (refusing, fail closed): " + info.ParseError
			return d
		}
	}
	vars := baseVars(req, now)
	vars["request"] = map[string]any{"kind": "ssh", "ssh": sshValues(s, &info)}
	enforced, all, shadowSeen := e.evaluate(req.Resource.Name, vars, func(r *rule) bool {
		return r.reads == readsSQL || info.ParseError != "" && !r.onParseError
	})
	fill := func(m match, d *schemas.DecisionReply) {
		// Only content detectors mask a terminal's output; columns mean nothing here.
		m.masks = slices.DeleteFunc(slices.Clone(m.masks), func(r *rule) bool { return r.mask == nil || len(r.mask.Detectors) == 0 })
		if m.best == nil {
			d.Effect, d.Reason = schemas.EffectDeny, sshDenial(s, &info, req.Resource.Name)
			return
		}
		m.fill(d, nil, req.Resource.Name)
		if d.Mask != nil {
			d.Mask.Columns = nil
		}
	}
	fill(enforced, &d)
	if d.Allowed() {
		for _, g := range req.Grants {
			d.Grants = append(d.Grants, g.ID)
		}
	}
	if shadowSeen {
		var would schemas.DecisionReply
		fill(all, &would)
		if would.Effect != d.Effect || would.Rule != d.Rule || would.Policy != d.Policy {
			d.Shadow = &schemas.Shadow{Effect: would.Effect, Policy: would.Policy, Rule: would.Rule, Reason: would.Reason}
		}
	}
	return d
}

// maxAsked bounds what a denial quotes of the request.
const maxAsked = 200

// sshDenial is the default denial: what was asked, by which login on which resource.
func sshDenial(s *schemas.SSHRequest, info *ShellInfo, resource string) string {
	q := func(v string) string { return strconv.Quote(clip(v, maxAsked)) }
	var asked string
	switch s.Request {
	case "exec":
		asked = "exec of " + q(s.Command)
		if len(info.Programs) > 0 {
			names := make([]string, 0, maxNamed)
			for i, p := range info.Programs {
				if i == maxNamed {
					names = append(names, fmt.Sprintf("and %d more", len(info.Programs)-maxNamed))
					break
				}
				names = append(names, clip(p, 64))
			}
			asked += " (programs " + strings.Join(names, ", ") + ")"
		}
		if info.ParseError != "" {
			asked += ", which does not parse: " + clip(info.ParseError, maxAsked)
		}
	case "subsystem":
		asked = "subsystem " + q(s.Subsystem)
	case "env":
		asked = "env " + q(s.EnvName)
	case "sftp":
		if s.SFTP != nil {
			asked = "sftp " + q(s.SFTP.Op) + " of " + q(cleanPath(s.SFTP.Path))
			if s.SFTP.Target != "" {
				asked += " to " + q(cleanPath(s.SFTP.Target))
			}
		} else {
			asked = "sftp"
		}
	case "open", "tcpip-forward":
		asked = s.Request + " of a " + q(s.Channel) + " channel"
		if s.Host != "" || s.Port != 0 {
			asked += " to " + q(s.Host+":"+strconv.FormatUint(uint64(s.Port), 10))
		}
	default:
		asked = q(s.Request)
		if s.Request != "" && strconv.Quote(s.Request) == `"`+s.Request+`"` && len(s.Request) <= 64 {
			asked = s.Request
		}
	}
	login := strconv.Quote(clip(s.Login, 64))
	if login == `"`+s.Login+`"` && s.Login != "" {
		login = s.Login
	}
	return fmt.Sprintf("no rule allows %s for %s@%s", asked, login, resource)
}

// protoParts are the protocol parts of a request a rule reads.
type protoParts uint8

const (
	readsSQL protoParts = 1 << iota // request.sql
	readsSSH                        // request.ssh
)

// requestParts says which protocol parts a rule reads. A rule that uses request otherwise
// than by a constant field (request[k], request.all(...)) reads them all; a rule that reads
// neither (identity, resource, request.kind) applies to every request of its resources.
func requestParts(ast *cel.Ast) protoParts {
	all := readsSQL | readsSSH
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return all
	}
	part := func(name string) protoParts {
		switch name {
		case "sql":
			return readsSQL
		case "ssh":
			return readsSSH
		}
		return 0
	}
	isRequest := func(e *exprpb.Expr) bool { return e.GetIdentExpr().GetName() == "request" }
	var parts protoParts
	var walk func(e *exprpb.Expr)
	walk = func(e *exprpb.Expr) {
		if e == nil {
			return
		}
		switch k := e.GetExprKind().(type) {
		case *exprpb.Expr_IdentExpr:
			if isRequest(e) {
				parts |= all // request used whole
			}
		case *exprpb.Expr_SelectExpr:
			if isRequest(k.SelectExpr.GetOperand()) {
				parts |= part(k.SelectExpr.GetField())
				return
			}
			walk(k.SelectExpr.GetOperand())
		case *exprpb.Expr_CallExpr:
			args := k.CallExpr.GetArgs()
			if k.CallExpr.GetFunction() == "_[_]" && len(args) == 2 && isRequest(args[0]) {
				if c := args[1].GetConstExpr(); c != nil {
					parts |= part(c.GetStringValue())
				} else {
					parts |= all
				}
				walk(args[1])
				return
			}
			walk(k.CallExpr.GetTarget())
			for _, a := range args {
				walk(a)
			}
		case *exprpb.Expr_ListExpr:
			for _, el := range k.ListExpr.GetElements() {
				walk(el)
			}
		case *exprpb.Expr_StructExpr:
			for _, en := range k.StructExpr.GetEntries() {
				walk(en.GetMapKey())
				walk(en.GetValue())
			}
		case *exprpb.Expr_ComprehensionExpr:
			c := k.ComprehensionExpr
			for _, x := range []*exprpb.Expr{c.GetIterRange(), c.GetAccuInit(), c.GetLoopCondition(), c.GetLoopStep(), c.GetResult()} {
				walk(x)
			}
		}
	}
	walk(checked.GetExpr())
	return parts
}
