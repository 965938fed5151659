package scp

import (
	"path"
	"strings"
)

// Directions of a transfer.
const (
	Upload   = "upload"   // scp -t: the client sends files to the host
	Download = "download" // scp -f: the host sends files to the client
)

// Command is an scp exec, parsed.
type Command struct {
	// Direction is Upload (-t) or Download (-f).
	Direction string
	// Target is the path argument once the host's shell has read it: quotes
	// removed, and a leading ~ or ~/ (the home directory, where the command
	// runs) made relative.
	Target string
	// Recursive: -r.
	Recursive bool
	// TargetIsDir: -d, the target must be a directory.
	TargetIsDir bool
	// Preserve: -p, times and modes are sent.
	Preserve bool
	// Glob: a download whose target's last element has wildcards the host's
	// shell expands; each file it sends is recorded in the target's directory.
	Glob bool
}

// ParseCommand recognises `scp [-r] [-p] [-d] [-v] -t|-f [--] path`, as the
// host's shell would run it. ok is false for anything else, including a
// command the shell would expand into something else (variables, command
// substitution, several words of path, redirections, ~user): such an exec is
// not an scp transfer the gateway can follow.
func ParseCommand(cmd string) (c Command, ok bool) {
	words, ok := shellWords(cmd)
	if !ok || len(words) < 3 || words[0].text != "scp" || words[0].glob || words[0].tilde {
		return Command{}, false
	}
	var t, f bool
	i := 1
	for ; i < len(words); i++ {
		w := words[i]
		if w.text == "--" && !w.glob {
			i++
			break
		}
		if !strings.HasPrefix(w.text, "-") || len(w.text) < 2 {
			break
		}
		for _, r := range w.text[1:] {
			switch r {
			case 'r':
				c.Recursive = true
			case 'p':
				c.Preserve = true
			case 'd':
				c.TargetIsDir = true
			case 'v':
			case 't':
				t = true
			case 'f':
				f = true
			default:
				return Command{}, false
			}
		}
	}
	if t == f || i != len(words)-1 {
		return Command{}, false
	}
	w := words[i]
	target := w.text
	if w.tilde {
		switch {
		case target == "~":
			target = "."
		case strings.HasPrefix(target, "~/"):
			target = strings.TrimLeft(target[2:], "/")
			if target == "" {
				target = "."
			}
		default:
			return Command{}, false // ~user
		}
	}
	if target == "" {
		return Command{}, false
	}
	if t {
		c.Direction = Upload
	} else {
		c.Direction = Download
	}
	if w.glob {
		// Only a download's last element may be a pattern: the files come
		// back named, in the pattern's directory.
		dir := path.Dir(strings.TrimRight(target, "/"))
		if t || w.globBefore(len(dir)) {
			return Command{}, false
		}
		c.Glob = true
	}
	c.Target = target
	return c, true
}

// word is one word of a command line.
type word struct {
	text  string
	tilde bool  // starts with an unquoted ~
	globs []int // offsets of unquoted *, ? and [
	glob  bool
}

// globBefore says whether an unquoted wildcard sits before offset n.
func (w word) globBefore(n int) bool {
	for _, i := range w.globs {
		if i < n {
			return true
		}
	}
	return false
}

// shellWords splits a command line as a POSIX shell would, refusing what
// would make the shell run something other than the words: unquoted
// operators and expansions other than wildcards, $ and ` inside double
// quotes, and brace expansion.
func shellWords(s string) ([]word, bool) {
	var words []word
	var cur strings.Builder
	var w word
	in := false
	end := func() {
		if in {
			w.text = cur.String()
			w.glob = len(w.globs) > 0
			words = append(words, w)
		}
		cur.Reset()
		w = word{}
		in = false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t':
			end()
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += 1 + j
			in = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch s[i] {
				case '$', '`':
					return nil, false
				case '\\':
					if i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
						i++
					}
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false
			}
			in = true
		case ch == '\\':
			if i+1 >= len(s) || s[i+1] == '\n' {
				return nil, false
			}
			i++
			cur.WriteByte(s[i])
			in = true
		case strings.IndexByte("|&;<>()$`\n\r{}#!", ch) >= 0:
			// # starts a comment only at a word's start, ! and braces only
			// sometimes: refused everywhere, no scp client sends them bare.
			return nil, false
		case ch == '~' && !in:
			w.tilde = true
			cur.WriteByte(ch)
			in = true
		case ch == '*' || ch == '?' || ch == '[':
			w.globs = append(w.globs, cur.Len())
			cur.WriteByte(ch)
			in = true
		case ch == 0:
			return nil, false
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	end()
	return words, true
}
