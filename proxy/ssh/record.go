package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/schemas"
)

// The record of a session channel: what it carried as timed frames (asciicast v2: output
// "o", stderr "e", input "i", resize "r"), in ssh.io events of bounded size, flushed when
// a chunk is full, when the channel ends, and a second after its first frame otherwise.
//
// Input typed at a terminal is recorded as the host echoed it: a keystroke the host did not
// echo (a password at a sudo, su or passwd prompt; the terminal's echo is off there) is
// recorded as '*'. Keystrokes wait in the recorder until the host's answer to the line
// they end shows whether it echoed them (echo.go).

// flushAfter is how long a frame waits for more before its chunk is sent.
const flushAfter = time.Second

// What a channel records is bounded (proxy.ssh.max_recorded_bytes): output past the bound
// passes, counted as dropped. Keystrokes have a bound of their own (a quarter of it, at
// least 1 MiB), so that a flood of output cannot leave what is typed afterwards
// unrecorded; past it the channel is closed — nothing typed goes unrecorded. Without a
// terminal, what the client sends is a program's input, not keystrokes: it may carry
// secrets (a password for sudo -S, a token for --password-stdin), so it is recorded by its
// SHA-256 and size (ssh.exit), not as frames.
const minInputRecord = 1 << 20

// recorder records one channel.
type recorder struct {
	c        *conn
	n        uint32
	max      int64 // bytes recorded at most
	chunkMax int

	mu       sync.Mutex
	start    time.Time
	id       uint64 // the program's request
	pty      bool
	frames   []schemas.TermFrame
	size     int
	chunk    uint32
	recorded int64
	dropped  uint64
	hidden   uint64
	masked   uint64
	carry    [2][]byte // an incomplete UTF-8 sequence at the end of "o" and "e" output
	om       [2]*mask.Stream
	omSince  [2]time.Time // when the bytes the recording masker holds came
	echo     echoTracker
	timer    *time.Timer
	closed   bool
	inMax    int64 // keystrokes recorded at most
	inBytes  int64
	stdin    hash.Hash // a program without a terminal: its input
	// overflow is called (once, without the lock) when keystrokes pass their bound.
	overflow func()
	over     bool
}

func newRecorder(c *conn, n uint32, limit int64) *recorder {
	chunk := c.srv.cfg.Limits.ResultChunkBytes
	if chunk <= 0 {
		chunk = 64 << 10
	}
	return &recorder{c: c, n: n, max: limit, chunkMax: chunk, start: time.Now(), inMax: max(limit/4, minInputRecord)}
}

// stdinSum is the SHA-256 of a program's input without a terminal ("" with one).
func (r *recorder) stdinSum() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stdin == nil {
		return ""
	}
	return hex.EncodeToString(r.stdin.Sum(nil))
}

// program says which request started the channel's program, and whether it has a terminal.
// A program without a terminal has its input hashed (stdinSum); a file channel's input is
// its files, hashed file by file (ssh.file).
func (r *recorder) program(id uint64, pty, files bool) {
	r.mu.Lock()
	r.id, r.pty = id, pty
	if !pty && !files {
		r.stdin = sha256.New()
	}
	r.mu.Unlock()
}

// terminal notes the terminal's size when a pty is granted (replay's screen size).
func (r *recorder) terminal(term string, cols, rows uint32) {
	r.resize(cols, rows)
}

// maskWith masks what the recording keeps of the output (a terminal, whose client gets it
// unmasked: a terminal's stream cannot be changed without breaking what it draws).
func (r *recorder) maskWith(m *mask.Masker) {
	r.mu.Lock()
	r.om = [2]*mask.Stream{mask.NewStream(m), mask.NewStream(m)}
	r.mu.Unlock()
}

// countMasked adds values masked on the way to the client (their record is masked too).
func (r *recorder) countMasked(n int, _ *mask.Stream) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	r.masked += uint64(n)
	r.mu.Unlock()
}

func codeIndex(code string) int {
	if code == "e" {
		return 1
	}
	return 0
}

// output records a piece of the host's output.
func (r *recorder) output(code string, p []byte) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pty {
		r.addInputLocked(r.echo.output(p))
	}
	i := codeIndex(code)
	t := now
	if m := r.om[i]; m != nil {
		if !r.omSince[i].IsZero() {
			t = r.omSince[i] // what was held came first
		}
		var n int
		p, n = m.Feed(p)
		r.masked += uint64(n)
		if m.Held() > 0 {
			if len(p) > 0 || r.omSince[i].IsZero() {
				r.omSince[i] = now
			}
		} else {
			r.omSince[i] = time.Time{}
		}
	}
	r.outputLocked(i, code, p, t)
}

func (r *recorder) outputLocked(i int, code string, p []byte, t time.Time) {
	if len(p) == 0 {
		return
	}
	b := append(r.carry[i], p...)
	// Keep an incomplete UTF-8 sequence at the end for the next piece.
	cut := len(b)
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			break
		}
		if c >= 0xc0 {
			if !utf8.FullRune(b[len(b)-k:]) {
				cut = len(b) - k
			}
			break
		}
	}
	r.carry[i] = append([]byte(nil), b[cut:]...)
	r.addLocked(code, b[:cut], t)
}

// input records a piece of the client's input.
func (r *recorder) input(p []byte) {
	now := time.Now()
	r.mu.Lock()
	if !r.pty {
		if r.stdin != nil {
			r.stdin.Write(p)
		}
		r.mu.Unlock()
		return
	}
	r.inBytes += int64(len(p))
	if r.inBytes > r.inMax {
		over := !r.over
		r.over = true
		r.mu.Unlock()
		if over && r.overflow != nil {
			r.overflow()
		}
		return
	}
	r.addInputLocked(r.echo.input(p, now))
	r.mu.Unlock()
}

// addInputLocked records keystrokes the echo tracker has decided (a typed line, mostly).
// Where the recording is masked, what was typed is masked too: a card number typed or
// pasted at the terminal is found in its line, which is then one frame (at its first key's
// time).
func (r *recorder) addInputLocked(fs []inFrame) {
	if len(fs) == 0 {
		return
	}
	if r.om[0] == nil {
		for _, f := range fs {
			r.addLocked("i", f.data, f.t)
			r.hidden += uint64(f.hidden)
		}
		return
	}
	var line []byte
	for _, f := range fs {
		line = append(line, f.data...)
		r.hidden += uint64(f.hidden)
	}
	masked, n := r.om[0].Masker().Detect(line)
	r.masked += uint64(n)
	r.addLocked("i", masked, fs[0].t)
}

// resize records the terminal's new size.
func (r *recorder) resize(cols, rows uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked("r", []byte(fmt.Sprintf("%dx%d", cols, rows)), time.Now())
}

// addLocked adds a frame, within the channel's recording limit.
func (r *recorder) addLocked(code string, data []byte, t time.Time) {
	if len(data) == 0 || r.closed {
		return
	}
	if code != "i" { // keystrokes are bounded apart (input)
		if r.recorded+int64(len(data)) > r.max {
			r.dropped += uint64(len(data))
			return
		}
		r.recorded += int64(len(data))
	}
	s := string(data)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	tu := t.Sub(r.start).Microseconds()
	if tu < 0 {
		tu = 0
	}
	r.frames = append(r.frames, schemas.TermFrame{TUS: uint64(tu), Code: code, Data: s})
	// Control characters take six bytes in JSON: bound the encoded size, not the raw one.
	r.size += 2*len(s) + 32
	if r.size >= r.chunkMax {
		r.flushLocked()
		return
	}
	if r.timer == nil {
		var t *time.Timer
		t = time.AfterFunc(flushAfter, func() {
			r.mu.Lock()
			if r.timer == t { // not a timer a flush has replaced meanwhile
				r.timer = nil
				r.flushLocked()
			}
			r.mu.Unlock()
		})
		r.timer = t
	}
}

// flushLocked records the frames gathered as one ssh.io event.
func (r *recorder) flushLocked() {
	if len(r.frames) == 0 && r.dropped == 0 && r.hidden == 0 {
		return
	}
	ev := &schemas.SshIo{QueryID: r.id, Channel: r.n, Chunk: r.chunk, Frames: r.frames, HiddenInput: r.hidden, Dropped: r.dropped}
	if r.masked > 0 {
		ev.Masked = []schemas.MaskedCount{{Name: "output", By: "detectors", Count: r.masked}}
	}
	r.chunk++
	r.frames, r.size, r.hidden, r.dropped, r.masked = nil, 0, 0, 0, 0
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.c.sess.Record(ev)
}

// close records what is left: held output, keystrokes whose echo never came (as hidden).
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, code := range []string{"o", "e"} {
		if m := r.om[i]; m != nil {
			p, n := m.Flush()
			r.masked += uint64(n)
			t := r.omSince[i]
			if t.IsZero() {
				t = time.Now()
			}
			r.outputLocked(i, code, p, t)
		}
		if len(r.carry[i]) > 0 {
			r.addLocked(code, r.carry[i], time.Now())
			r.carry[i] = nil
		}
	}
	r.addInputLocked(r.echo.flush())
	r.flushLocked()
	r.closed = true
}
