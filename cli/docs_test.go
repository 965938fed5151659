package cli

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README and the pages under docs/ are checked here: every `gatehouse ...` command they
// show (in code blocks and in inline code) must still parse — `gatehouse WORDS --help`
// exits 0 and its help lists every flag the command is shown with — every `make TARGET`
// they show must exist, and every link into the repository must resolve (anchors into
// Markdown pages included).

// docPages are the pages checked, relative to the repository root.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	pages = append([]string{"../README.md"}, pages...)
	require.Greater(t, len(pages), 1, "no pages under docs/")
	return pages
}

// mdLine is one line of a Markdown page, with where it sits.
type mdLine struct {
	no     int
	text   string
	inCode bool // inside a fenced code block
}

var fence = regexp.MustCompile("^\\s*(```|~~~)")

func readPage(t *testing.T, path string) []mdLine {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []mdLine
	inCode := false
	for i, l := range strings.Split(string(b), "\n") {
		if fence.MatchString(l) {
			inCode = !inCode
			continue
		}
		out = append(out, mdLine{no: i + 1, text: l, inCode: inCode})
	}
	return out
}

// paragraphs joins the prose lines (outside code blocks) of a page into paragraphs, so that
// inline code and links broken across lines are seen whole; each keeps its first line.
func paragraphs(lines []mdLine) []mdLine {
	var out []mdLine
	var cur *mdLine
	for _, l := range lines {
		if l.inCode || strings.TrimSpace(l.text) == "" {
			cur = nil
			continue
		}
		if cur == nil {
			out = append(out, mdLine{no: l.no, text: l.text})
			cur = &out[len(out)-1]
			continue
		}
		cur.text += " " + strings.TrimSpace(l.text)
	}
	return out
}

// docCommand is a gatehouse command line shown in a page.
type docCommand struct {
	where string   // page:line
	text  string   // the command as shown, from "gatehouse" on
	words []string // the (sub)command words: "sessions", "list"
	flags []string // flag names it is shown with: "effect", "since"
}

var (
	// An invocation: gatehouse (or bin/gatehouse, ./bin/gatehouse) at the start of a
	// line, after a prompt, a space, or inside $( ... ).
	invocation = regexp.MustCompile(`(?:^|[\s(])(?:\./)?(?:bin/)?gatehouse(?:\s+|$)`)
	inlineCode = regexp.MustCompile("`([^`]+)`")
	cmdWord    = regexp.MustCompile(`^[a-z][a-z-]*$`)
	flagToken  = regexp.MustCompile(`^--?([a-zA-Z][a-zA-Z0-9-]*)(=.*)?$`)
	makeCmd    = regexp.MustCompile(`^(?:\$\s+)?make\s+([a-z][a-z0-9-]*)`)
)

// shellFields splits a command line as a shell would, roughly: quotes group, and the line
// ends at a pipe, a redirect, a list operator, a closing $( ... ) or a comment.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	inTok := false
	var quote rune
	flush := func() {
		if inTok {
			out = append(out, cur.String())
		}
		cur.Reset()
		inTok = false
	}
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inTok = r, true
		case unicode.IsSpace(r):
			flush()
		case strings.ContainsRune("|;&)>", r):
			flush()
			return out
		case r == '#' && !inTok:
			return out
		default:
			cur.WriteRune(r)
			inTok = true
		}
	}
	flush()
	return out
}

// parseCommand reads a command line from just after "gatehouse". Synopsis notation in
// prose ("[--session ID | --since T]") is read as the flags it names.
func parseCommand(rest string, synopsis bool) (words, flags []string) {
	if synopsis {
		rest = strings.NewReplacer("[", " ", "]", " ", "(", " ", ")", " ").Replace(rest)
		rest = regexp.MustCompile(`\s\|\s+-`).ReplaceAllString(rest, " -")
	}
	fields := shellFields(rest)
	i := 0
	for ; i < len(fields) && len(words) < 2 && cmdWord.MatchString(fields[i]); i++ {
		words = append(words, fields[i])
	}
	for _, f := range fields[i:] {
		if m := flagToken.FindStringSubmatch(f); m != nil {
			flags = append(flags, m[1])
		}
	}
	return words, flags
}

// commandsIn finds the gatehouse command lines in a piece of text.
func commandsIn(where, text string, synopsis bool) []docCommand {
	var out []docCommand
	for _, loc := range invocation.FindAllStringIndex(text, -1) {
		start := strings.Index(text[loc[0]:], "gatehouse") + loc[0]
		rest := text[loc[1]:]
		words, flags := parseCommand(rest, synopsis)
		shown := strings.TrimSpace(text[start:])
		out = append(out, docCommand{where: where, text: shown, words: words, flags: flags})
	}
	return out
}

func docCommands(t *testing.T, page string) (cmds []docCommand, makeTargets map[string]string) {
	t.Helper()
	lines := readPage(t, page)
	name := strings.TrimPrefix(page, "../")
	makeTargets = map[string]string{}
	for _, l := range lines {
		if !l.inCode {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, l.no)
		cmds = append(cmds, commandsIn(where, l.text, false)...)
		if m := makeCmd.FindStringSubmatch(strings.TrimSpace(l.text)); m != nil {
			makeTargets[m[1]] = where
		}
	}
	for _, p := range paragraphs(lines) {
		for _, m := range inlineCode.FindAllStringSubmatch(p.text, -1) {
			code := strings.TrimSpace(m[1])
			where := fmt.Sprintf("%s:%d", name, p.no)
			if strings.HasPrefix(code, "gatehouse ") || strings.HasPrefix(code, "bin/gatehouse ") || code == "gatehouse" {
				cmds = append(cmds, commandsIn(where, code, true)...)
			}
			if mm := makeCmd.FindStringSubmatch(code); mm != nil {
				makeTargets[mm[1]] = where
			}
		}
	}
	return cmds, makeTargets
}

func flagList(flags []string) string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = "--" + f
	}
	return strings.Join(out, " ")
}

// helpListsFlag reports whether a command's help shows the flag.
func helpListsFlag(help, name string) bool {
	return regexp.MustCompile(`(?m)(^|[\s\[(|,])--?` + regexp.QuoteMeta(name) + `([\s=,\]|)]|$)`).MatchString(help)
}

func TestDocsCommandsParse(t *testing.T) {
	// A command that ran instead of printing its help must not reach a gateway.
	t.Setenv("GATEHOUSE_URL", "http://127.0.0.1:1")
	t.Setenv("GATEHOUSE_TOKEN", "")
	makefile, err := os.ReadFile("../Makefile")
	require.NoError(t, err)

	seen := map[string]bool{}
	total := 0
	for _, page := range docPages(t) {
		cmds, targets := docCommands(t, page)
		if filepath.Base(page) == "README.md" {
			require.GreaterOrEqual(t, len(cmds), 10, "the README's commands were not found: is the extraction broken?")
			require.Contains(t, targets, "dev", "the README must show make dev")
			require.Contains(t, targets, "test", "the README must show make test")
		}
		for target, where := range targets {
			assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(target)+`:`, string(makefile), "%s: make %s: no such target in the Makefile", where, target)
		}
		for _, c := range cmds {
			total++
			key := strings.Join(c.words, " ") + " | " + strings.Join(c.flags, " ")
			if seen[key] {
				continue
			}
			seen[key] = true
			args := append(slices.Clone(c.words), "--help")
			t.Run(strings.TrimSpace(strings.Join(c.words, " ")+" "+flagList(c.flags)), func(t *testing.T) {
				var out, errOut bytes.Buffer
				code := Main(args, &out, &errOut)
				help := out.String() + errOut.String()
				require.Equal(t, 0, code, "%s: %q: `gatehouse %s` exits %d:\n%s", c.where, c.text, strings.Join(args, " "), code, help)
				for _, f := range c.flags {
					if f == "help" || f == "h" {
						continue
					}
					require.True(t, helpListsFlag(help, f), "%s: %q: `gatehouse %s` does not list --%s:\n%s", c.where, c.text, strings.Join(args, " "), f, help)
				}
			})
		}
	}
	t.Logf("%d command lines shown, %d distinct checked", total, len(seen))
}

var (
	mdLink    = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	mdRefLink = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	heading   = regexp.MustCompile(`^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$`)
	repoURL   = regexp.MustCompile(`^https?://github\.com/gatehouse/gatehouse/(?:blob|tree)/[^/]+/(.*)$`)
)

// anchors are the heading anchors of a Markdown page, as GitHub makes them.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	count := map[string]int{}
	for _, l := range readPage(t, path) {
		if l.inCode {
			continue
		}
		m := heading.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := count[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		count[slug]++
	}
	return out
}

func TestDocsLinksResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	checked, external := 0, 0
	for _, page := range docPages(t) {
		name := strings.TrimPrefix(page, "../")
		var links []struct {
			where, target string
		}
		lines := readPage(t, page)
		for _, p := range paragraphs(lines) {
			// Inline code is not a link, even when it looks like one.
			text := inlineCode.ReplaceAllStringFunc(p.text, func(s string) string {
				return strings.Repeat("x", len(s))
			})
			// ... but a link's text may be code: match on the original where the
			// masked text has a link.
			for _, loc := range mdLink.FindAllStringIndex(text, -1) {
				m := mdLink.FindStringSubmatch(p.text[loc[0]:])
				if m == nil {
					continue
				}
				links = append(links, struct{ where, target string }{fmt.Sprintf("%s:%d", name, p.no), m[1]})
			}
		}
		for _, l := range lines {
			if m := mdRefLink.FindStringSubmatch(l.text); m != nil && !l.inCode {
				links = append(links, struct{ where, target string }{fmt.Sprintf("%s:%d", name, l.no), m[1]})
			}
		}
		for _, l := range links {
			target := l.target
			if m := repoURL.FindStringSubmatch(target); m != nil {
				target = "/" + m[1]
			} else if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				external++
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(target, "#")
			var abs string
			switch {
			case path == "":
				abs, _ = filepath.Abs(page)
			case strings.HasPrefix(path, "/"):
				abs = filepath.Join(root, path)
			default:
				abs, _ = filepath.Abs(filepath.Join(filepath.Dir(page), path))
			}
			rel, err := filepath.Rel(root, abs)
			require.NoError(t, err)
			if !assert.False(t, rel == ".." || strings.HasPrefix(rel, "../"), "%s: link %q leaves the repository", l.where, l.target) {
				continue
			}
			st, err := os.Stat(abs)
			if !assert.NoError(t, err, "%s: link %q: %s does not exist", l.where, l.target, rel) {
				continue
			}
			if anchor != "" && !st.IsDir() && strings.HasSuffix(abs, ".md") {
				assert.True(t, anchors(t, abs)[anchor], "%s: link %q: %s has no heading #%s", l.where, l.target, rel, anchor)
			}
		}
	}
	require.Greater(t, checked, 20, "the links were not found: is the extraction broken?")
	t.Logf("%d repository links checked, %d external links not checked", checked, external)
}

// The extraction itself: what a page shows is what gets checked, and a flag the help does
// not list is caught.
func TestDocsExtraction(t *testing.T) {
	cmds := commandsIn("x", `export PGPASSWORD=$(bin/gatehouse token --dev --sub svc-orders --groups orders-readers)`, false)
	require.Len(t, cmds, 1)
	require.Equal(t, []string{"token"}, cmds[0].words)
	require.Equal(t, []string{"dev", "sub", "groups"}, cmds[0].flags)

	cmds = commandsIn("x", `$ bin/gatehouse policy test --as a --resource demo "delete from customers --x" | tail -1 --nope`, false)
	require.Len(t, cmds, 1)
	require.Equal(t, []string{"policy", "test"}, cmds[0].words)
	require.Equal(t, []string{"as", "resource"}, cmds[0].flags)

	cmds = commandsIn("x", `gatehouse audit verify [--session ID | --since T]`, true)
	require.Len(t, cmds, 1)
	require.Equal(t, []string{"audit", "verify"}, cmds[0].words)
	require.Equal(t, []string{"session", "since"}, cmds[0].flags)

	cmds = commandsIn("x", `gatehouse sessions replay 01a23a29-b8a3 --json  # a comment --nope`, false)
	require.Equal(t, []string{"sessions", "replay"}, cmds[0].words)
	require.Equal(t, []string{"json"}, cmds[0].flags)

	require.Empty(t, commandsIn("x", "user: gatehouse_demo, /etc/gatehouse/hec, gatehouse:svc-orders", false))

	var out, errOut bytes.Buffer
	require.Equal(t, 0, Main([]string{"sessions", "list", "--help"}, &out, &errOut))
	help := out.String() + errOut.String()
	require.True(t, helpListsFlag(help, "effect"), help)
	require.False(t, helpListsFlag(help, "effects"), help)
	require.False(t, helpListsFlag(help, "no-such-flag"), help)

	links := mdLink.FindAllStringSubmatch("see [`proxy/postgres`](../proxy/postgres/doc.go) and [x](a.md#b \"t\")", -1)
	require.Len(t, links, 2)
	require.Equal(t, "../proxy/postgres/doc.go", links[0][1])
	require.Equal(t, "a.md#b", links[1][1])
}

// Every input a policy rule can read (the variables Decide hands to CEL) is in the policy
// reference, docs/policy.md: the inputs of every request (baseVars), the SQL request's
// (vars["request"] in engine.go), the SSH request's (vars["request"] in ssh.go and the map
// sshValues returns, with its sftp map).
func TestDocsPolicyInputs(t *testing.T) {
	fset := token.NewFileSet()
	parse := func(path string) *ast.File {
		f, err := parser.ParseFile(fset, path, nil, 0)
		require.NoError(t, err)
		return f
	}
	engine, ssh := parse("../policy/engine.go"), parse("../policy/ssh.go")
	// requestLit is the map literal assigned to vars["request"] in f.
	requestLit := func(f *ast.File) (lit *ast.CompositeLit) {
		ast.Inspect(f, func(n ast.Node) bool {
			if a, ok := n.(*ast.AssignStmt); ok && len(a.Lhs) == 1 && len(a.Rhs) == 1 {
				if ix, ok := a.Lhs[0].(*ast.IndexExpr); ok {
					if id, ok := ix.X.(*ast.Ident); ok && id.Name == "vars" {
						lit, _ = a.Rhs[0].(*ast.CompositeLit)
					}
				}
			}
			return lit == nil
		})
		return lit
	}
	// returned is the map literal function fn of f returns, and the map literals assigned
	// to its local variables by name.
	returned := func(f *ast.File, fn string) (ret *ast.CompositeLit, locals map[string]*ast.CompositeLit) {
		locals = map[string]*ast.CompositeLit{}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != fn {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.ReturnStmt:
					if len(x.Results) == 1 {
						if lit, ok := x.Results[0].(*ast.CompositeLit); ok {
							ret = lit
						}
					}
				case *ast.AssignStmt:
					if len(x.Lhs) == 1 && len(x.Rhs) == 1 {
						if id, ok := x.Lhs[0].(*ast.Ident); ok {
							if lit, ok := x.Rhs[0].(*ast.CompositeLit); ok {
								locals[id.Name] = lit
							}
						}
					}
				}
				return true
			})
		}
		return ret, locals
	}
	var inputs []string
	var walk func(prefix string, lit *ast.CompositeLit, locals map[string]*ast.CompositeLit)
	walk = func(prefix string, lit *ast.CompositeLit, locals map[string]*ast.CompositeLit) {
		for _, el := range lit.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			k, ok := kv.Key.(*ast.BasicLit)
			if !ok || k.Kind != token.STRING {
				continue
			}
			name := prefix + strings.Trim(k.Value, `"`)
			if sub, ok := kv.Value.(*ast.CompositeLit); ok {
				if _, isMap := sub.Type.(*ast.MapType); isMap {
					walk(name+".", sub, locals)
					continue
				}
			}
			if id, ok := kv.Value.(*ast.Ident); ok && locals[id.Name] != nil {
				walk(name+".", locals[id.Name], locals)
				continue
			}
			if call, ok := kv.Value.(*ast.CallExpr); ok {
				if fn, ok := call.Fun.(*ast.Ident); ok && fn.Name == "sshValues" {
					lit, loc := returned(ssh, "sshValues")
					require.NotNil(t, lit, "policy/ssh.go: sshValues returns no map literal")
					walk(name+".", lit, loc)
					continue
				}
			}
			inputs = append(inputs, name)
		}
	}
	base, _ := returned(engine, "baseVars")
	require.NotNil(t, base, "policy/engine.go: baseVars returns no map literal")
	walk("", base, nil)
	sqlReq, sshReq := requestLit(engine), requestLit(ssh)
	require.NotNil(t, sqlReq, `policy/engine.go: vars["request"] = map[string]any{...} not found`)
	require.NotNil(t, sshReq, `policy/ssh.go: vars["request"] = map[string]any{...} not found`)
	walk("request.", sqlReq, nil)
	walk("request.", sshReq, nil)
	require.Contains(t, inputs, "request.ssh.sftp.path", "the walk over the SSH inputs found too little: %v", inputs)
	require.Contains(t, inputs, "request.sql.kinds", "the walk over the CEL variables found too little: %v", inputs)
	doc, err := os.ReadFile("../docs/policy.md")
	require.NoError(t, err)
	for _, in := range inputs {
		assert.True(t, strings.Contains(string(doc), "`"+in+"`"), "docs/policy.md does not document the CEL input %s", in)
	}
}
