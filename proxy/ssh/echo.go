package ssh

import (
	"regexp"
	"time"
)

// What is typed at a terminal is recorded as the host echoed it. A terminal echoes what is
// typed unless the program reading it turned echo off — which is how password prompts read
// (sudo, su, passwd, ssh-keygen, mysql -p...). The gateway cannot see the host's terminal
// settings; it sees the host's output. So typed characters wait here until the host
// answers the line they end (the newline it outputs for the Enter): those it echoed in
// between are recorded as typed, those it did not as '*'. A line typed after output that
// reads like a password prompt (password, passphrase, PIN ... ':' at the end of the host's
// current line) is hidden whatever the host outputs after it, so that the prompt text
// itself cannot pass for an echo. Keystrokes that are not printable characters (Enter,
// Ctrl-C, the escape sequences of arrow and function keys) are recorded as they are.

// maxPendingInput bounds the keystrokes waiting for their echo: past it, the older half is
// decided with what is known (not echoed yet: hidden).
const maxPendingInput = 4096

// promptRE is what a password prompt's line looks like.
var promptRE = regexp.MustCompile(`(?i)(password|passphrase|passwort|contraseña|mot de passe|\bpin\b|secret)[^\n]*[:?>]\s*$`)

type pendingByte struct {
	b         byte
	t         time.Time
	printable bool
	hidden    bool // typed after a password prompt
}

// inFrame is input resolved for the record.
type inFrame struct {
	data   []byte
	t      time.Time
	hidden int // bytes of data recorded as '*'
}

// echoTracker matches keystrokes to their echo.
type echoTracker struct {
	pending []pendingByte
	matched int    // pending[:matched] are echoed (or need no echo)
	esc     int    // 0: not in an escape sequence; 1: after ESC; 2: in a CSI/SS3 sequence
	line    []byte // the host's current output line (its last bytes), for prompt detection
}

// input takes keystrokes; it returns what it had to decide early (too much pending).
func (e *echoTracker) input(p []byte, t time.Time) []inFrame {
	hide := promptRE.Match(e.line) && !e.enterPending()
	for _, c := range p {
		printable := c >= 0x20 && c != 0x7f
		switch e.esc {
		case 1:
			printable = false
			if c == '[' || c == 'O' {
				e.esc = 2
			} else {
				e.esc = 0
			}
		case 2:
			printable = false
			if c >= 0x40 && c <= 0x7e {
				e.esc = 0
			}
		}
		if c == 0x1b {
			e.esc, printable = 1, false
		}
		e.pending = append(e.pending, pendingByte{b: c, t: t, printable: printable, hidden: hide && printable})
		if c == '\r' || c == '\n' {
			hide = false
		}
	}
	if len(e.pending) > maxPendingInput {
		return e.resolve(len(e.pending) / 2)
	}
	return nil
}

// enterPending reports whether a typed line is waiting for the host's answer (the prompt
// on the host's line is then older than what is typed now).
func (e *echoTracker) enterPending() bool {
	for _, p := range e.pending {
		if p.b == '\r' || p.b == '\n' {
			return true
		}
	}
	return false
}

// output takes the host's output; it returns the keystrokes it decided.
func (e *echoTracker) output(p []byte) []inFrame {
	var out []inFrame
	for _, c := range p {
		for e.matched < len(e.pending) && !e.pending[e.matched].printable {
			e.matched++
		}
		if e.matched < len(e.pending) && e.pending[e.matched].b == c {
			e.matched++
		}
		if c == '\n' {
			e.line = e.line[:0]
			if end := e.firstEnter(); end >= 0 {
				out = append(out, e.resolve(end+1)...)
			}
			continue
		}
		if len(e.line) >= 256 {
			e.line = append(e.line[:0], e.line[128:]...)
		}
		e.line = append(e.line, c)
	}
	// A password prompt hides the line being typed after it (typed ahead of it, too).
	if len(e.pending) > 0 && promptRE.Match(e.line) {
		end := e.firstEnter()
		if end < 0 {
			end = len(e.pending) - 1
		}
		for i := 0; i <= end; i++ {
			if e.pending[i].printable {
				e.pending[i].hidden = true
			}
		}
	}
	return out
}

func (e *echoTracker) firstEnter() int {
	for i, p := range e.pending {
		if p.b == '\r' || p.b == '\n' {
			return i
		}
	}
	return -1
}

// resolve records pending[:n]: echoed keystrokes as typed, the others as '*'.
func (e *echoTracker) resolve(n int) []inFrame {
	var out []inFrame
	for i := 0; i < n; i++ {
		p := e.pending[i]
		hidden := p.printable && (p.hidden || i >= e.matched)
		b := p.b
		if hidden {
			b = '*'
		}
		if len(out) == 0 || !out[len(out)-1].t.Equal(p.t) {
			out = append(out, inFrame{t: p.t})
		}
		f := &out[len(out)-1]
		f.data = append(f.data, b)
		if hidden {
			f.hidden++
		}
	}
	e.pending = append(e.pending[:0], e.pending[n:]...)
	e.matched = max(0, e.matched-n)
	return out
}

// flush decides everything still waiting (the channel ended): what was not echoed is hidden.
func (e *echoTracker) flush() []inFrame {
	return e.resolve(len(e.pending))
}
