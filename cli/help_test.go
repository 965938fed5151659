package cli

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"mvdan.cc/sh/v3/shell"
)

// Every command and subcommand answers --help with exit 0 on stdout: what it does, every
// flag with a one-line explanation, and examples that themselves parse.
func TestEveryCommandExplainsItself(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	for _, c := range commands {
		t.Run(c.path, func(t *testing.T) {
			words := strings.Fields(c.path)
			code, out, errOut := run(append(words, "--help")...)
			require.Equal(t, 0, code, errOut)
			require.Empty(t, errOut)
			require.Contains(t, out, "Usage: gatehouse "+c.path)
			require.NotEmpty(t, c.summary)
			require.Contains(t, out, "Examples:\n  gatehouse "+c.path)
			// Each flag line has a name and an explanation.
			flags := strings.SplitN(strings.SplitN(out, "\nFlags:\n", 2)[1], "\n\n", 2)[0]
			lines := strings.Split(flags, "\n")
			require.NotEmpty(t, lines)
			for _, l := range lines {
				require.Regexp(t, `^  --?[a-z-]+( [A-Z,-]+)?  +\S`, l, "a flag without an explanation in %q", c.path)
			}
			// The same through `gatehouse help ...` and with -h.
			code, out2, _ := run(append([]string{"help"}, words...)...)
			require.Equal(t, 0, code)
			require.Equal(t, out, out2)
			code, out2, _ = run(append(words, "-h")...)
			require.Equal(t, 0, code)
			require.Equal(t, out, out2)
			// Each example names this command and only flags it has: parsing it with
			// --help appended fails on an unknown flag before --help is reached. What
			// follows -- is another program's (gatehouse connect's client): --help goes
			// before it.
			for _, ex := range c.examples {
				for _, line := range commandLines(t, ex) {
					require.True(t, strings.HasPrefix(strings.Join(line, " ")+" ", c.path+" "), "example %q is not a %q command", ex, c.path)
					if i := slices.Index(line, "--"); i >= 0 {
						line = line[:i]
					}
					code, _, errOut := run(append(line, "--help")...)
					require.Equal(t, 0, code, "example %q: %s", ex, errOut)
				}
			}
		})
	}
}

// commandLines extracts the gatehouse command lines from a shell line (in command
// substitutions too), as argument lists without the leading "gatehouse".
func commandLines(t *testing.T, line string) [][]string {
	var out [][]string
	for _, m := range regexp.MustCompile(`gatehouse [^)|>;&]*`).FindAllString(line, -1) {
		f, err := shell.Fields(m, func(string) string { return "" })
		require.NoError(t, err, m)
		out = append(out, f[1:])
	}
	require.NotEmpty(t, out, line)
	return out
}

func TestGroupsListTheirSubcommands(t *testing.T) {
	groups := map[string][]string{}
	for _, c := range commands {
		if g, sub, ok := strings.Cut(c.path, " "); ok {
			groups[g] = append(groups[g], sub)
		}
	}
	require.Subset(t, keys(groups), []string{"sessions", "policy", "approvals", "grants", "audit", "evidence", "resource", "catalog", "bench"})
	for g, subs := range groups {
		for _, h := range []string{"--help", "-h", "help"} {
			code, out, errOut := run(g, h)
			require.Equal(t, 0, code, "%s %s: %s", g, h, errOut)
			for _, s := range subs {
				require.Contains(t, out, "\n  "+s+" ", "%s --help omits %s", g, s)
			}
		}
		// Without a subcommand: exit 2 with the same list on stderr.
		code, out, errOut := run(g)
		require.Equal(t, 2, code)
		require.Empty(t, out)
		require.Contains(t, errOut, g+" needs a subcommand")
		require.Contains(t, errOut, "\n  "+subs[0]+" ")
		code, _, errOut = run(g, "nosuch")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, `has no subcommand "nosuch"`)
	}
}

func TestTopLevelHelpListsEveryCommand(t *testing.T) {
	code, out, _ := run("--help")
	require.Equal(t, 0, code)
	for _, c := range commands {
		require.Contains(t, out, "gatehouse "+c.path+" ")
	}
	require.Contains(t, out, "gatehouse evidence privileged")
	code, _, errOut := run("nosuch")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "nosuch"`)
}

// A bad flag is a short error on stderr naming the command's help, exit 2; help is never
// printed to stderr, and a token is never printed as a default.
func TestBadFlagsAndTokensAreReportedPlainly(t *testing.T) {
	code, out, errOut := run("sessions", "list", "--nosuch")
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Equal(t, "gatehouse: flag provided but not defined: -nosuch (see 'gatehouse sessions list --help')\n", errOut)

	t.Setenv("GATEHOUSE_TOKEN", "hunter2")
	code, out, _ = run("sessions", "list", "--help")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "hunter2")
	code, _, errOut = run("sessions", "list")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "GATEHOUSE_TOKEN is not a token")
	code, _, errOut = run("sessions", "list", "--token", "a.b")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--token is not a token")
	code, _, errOut = run("sessions", "list", "--token", "eyJhbGciOiJSUzI1NiJ9.eyJ$$$.x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "part 2 of the JWT is not base64url")
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
