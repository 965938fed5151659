// Shell command analysis: AnalyzeShell parses an SSH exec command as bash does
// (mvdan.cc/sh) and walks it: the commands it runs, wrappers (sudo, env, xargs, ...) and
// scripts in strings (bash -c, eval, su -c, ssh host cmd) seen through, within bounds of
// depth and size. Words and options are read in shell_words.go, files written and read in
// shell_files.go, code hidden in values in shell_values.go.

package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
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
