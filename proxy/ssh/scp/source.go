package scp

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// deniedByPolicy is the refusal message when Decide gives none.
const deniedByPolicy = "permission denied by policy"

// fromSource follows the source's side: records, message lines and content.
func (s *Stream) fromSource(p []byte) (forward, reply []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, nil, s.err
	}
	for len(p) > 0 {
		if s.done {
			return forward, reply, fmt.Errorf("%w: the source sent data after a fatal error", ErrProtocol)
		}
		if s.awaiting != awaitNothing {
			return forward, reply, fmt.Errorf("%w: the source sent data before the sink answered", ErrProtocol)
		}
		switch s.src {
		case srcContent:
			n := min(uint64(len(p)), s.cur.announced-s.cur.Size)
			s.cur.h.Write(p[:n])
			s.cur.Size += n
			forward = append(forward, p[:n]...)
			p = p[n:]
			if s.cur.Size == s.cur.announced {
				s.src = srcTrailer
			}
			continue
		case srcTrailer:
			if len(s.srcLine) == 0 && p[0] == 0 {
				s.cur.trailerOK = true
				forward = append(forward, 0)
				p = p[1:]
				s.src, s.awaiting = srcRecord, awaitClosed
				continue
			}
			if len(s.srcLine) == 0 && p[0] != 1 && p[0] != 2 {
				return forward, reply, fmt.Errorf("%w: byte %#x after a file's content", ErrProtocol, p[0])
			}
		}
		var line []byte
		line, p, err = s.readLine(&s.srcLine, p)
		if err != nil || line == nil {
			return forward, reply, err
		}
		var fwd, rep []byte
		fwd, rep, err = s.sourceLine(line)
		forward = append(forward, fwd...)
		reply = append(reply, rep...)
		if err != nil {
			return forward, reply, err
		}
	}
	return forward, reply, nil
}

// readLine gathers a line ending in '\n' into *buf, bounded by MaxLine. It
// returns the whole line once there is one, and the bytes after it.
func (s *Stream) readLine(buf *[]byte, p []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(p, '\n')
	take := p
	if i >= 0 {
		take = p[:i+1]
	}
	if len(*buf)+len(take) > s.limits.MaxLine {
		return nil, nil, fmt.Errorf("%w: a line longer than %d bytes", ErrLimit, s.limits.MaxLine)
	}
	*buf = append(*buf, take...)
	if i < 0 {
		return nil, nil, nil
	}
	line, *buf = *buf, nil
	if bytes.IndexByte(line[1:], 0) >= 0 {
		// OpenSSH reads C strings: it would act on less than was checked.
		return nil, nil, fmt.Errorf("%w: a NUL byte in a line", ErrProtocol)
	}
	return line, p[i+1:], nil
}

// sourceLine handles one whole line from the source.
func (s *Stream) sourceLine(line []byte) (forward, reply []byte, err error) {
	if s.src == srcTrailer {
		// The source could not read the whole file and says so instead of
		// 0x00; the sink answers it.
		switch line[0] {
		case 1:
			s.src, s.awaiting = srcRecord, awaitClosed
			return line, nil, nil
		case 2:
			s.done = true
			return line, nil, nil
		}
		return nil, nil, fmt.Errorf("%w: byte %#x after a file's content", ErrProtocol, line[0])
	}
	if len(line) < 2 {
		return nil, nil, fmt.Errorf("%w: an empty line", ErrProtocol)
	}
	text := string(line[1 : len(line)-1])
	switch line[0] {
	case 1: // a warning, not answered
		return line, nil, nil
	case 2:
		s.done = true
		return line, nil, nil
	case 'T':
		if !validTimes(text) {
			return nil, nil, fmt.Errorf("%w: malformed T record %q", ErrProtocol, line)
		}
		s.awaiting = awaitTimes
		return line, nil, nil
	case 'E':
		if text != "" {
			return nil, nil, fmt.Errorf("%w: malformed E record %q", ErrProtocol, line)
		}
		if len(s.dirs) == 0 {
			return nil, nil, fmt.Errorf("%w: E record outside a directory", ErrProtocol)
		}
		s.awaiting = awaitEnd
		return line, nil, nil
	case 'C', 'D':
		return s.entry(line[0], text, line)
	}
	return nil, nil, fmt.Errorf("%w: expected a record, got byte %#x", ErrProtocol, line[0])
}

// entry handles a C or D record: where it goes and, for an upload, whether
// policy lets it.
func (s *Stream) entry(kind byte, text string, line []byte) (forward, reply []byte, err error) {
	mode, size, name, err := parseEntry(text)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %c record %q: %v", ErrProtocol, kind, line, err)
	}
	if kind == 'D' && len(s.dirs) >= s.limits.MaxDepth {
		return nil, nil, fmt.Errorf("%w: directories nested deeper than %d", ErrLimit, s.limits.MaxDepth)
	}
	p, alt := s.place(kind, name)
	if s.cmd.Direction == Upload {
		op := Op{Kind: KindWrite, Path: p, Mode: mode}
		if kind == 'D' {
			op.Kind = KindMkdir
		}
		if msg, ok := s.decideUnlocked(op, alt); !ok {
			return nil, fmt.Appendf([]byte{1}, "scp: %s: %s\n", p, msg), nil
		}
		if s.err != nil { // the other side broke while policy decided
			return nil, nil, s.err
		}
	}
	if kind == 'D' {
		s.pending = &dir{path: p, alt: alt}
		s.awaiting = awaitDir
		return line, nil, nil
	}
	s.cur = newTransfer(File{Path: p, Alt: alt, Direction: s.cmd.Direction, Mode: mode}, size)
	s.awaiting = awaitFile
	return line, nil, nil
}

// decideUnlocked asks policy about op at its path and, if set, at alt, with
// the lock released (Decide may wait for a person).
func (s *Stream) decideUnlocked(op Op, alt string) (string, bool) {
	s.mu.Unlock()
	defer s.mu.Lock()
	for _, p := range []string{op.Path, alt} {
		if p == "" {
			continue
		}
		op.Path = p
		if ok, msg := s.decide(op); !ok {
			if msg == "" {
				msg = deniedByPolicy
			}
			return msg, false
		}
	}
	return "", true
}

// place says where the host puts an entry named name: for an upload, under
// the target, or the target itself when it is not a directory (alt); for a
// download, the target itself or, for a glob, in its directory.
func (s *Stream) place(kind byte, name string) (p, alt string) {
	if len(s.dirs) > 0 {
		parent := s.dirs[len(s.dirs)-1]
		if parent.alt != "" {
			alt = join(parent.alt, name)
		}
		return join(parent.path, name), alt
	}
	target := s.cmd.Target
	if s.cmd.Direction == Upload {
		if s.targetMayBeFile(kind) {
			alt = target
		}
		return join(target, name), alt
	}
	t := strings.TrimRight(target, "/")
	if t == "" {
		t = "/"
	}
	if !s.cmd.Glob && name == path.Base(t) {
		return t, ""
	}
	d := path.Dir(t)
	if d == "." && !strings.HasPrefix(t, "./") {
		return name, ""
	}
	return join(d, name), ""
}

// targetMayBeFile: OpenSSH's sink writes to the target itself unless it is
// an existing directory, and only -d makes it certain that it is one.
func (s *Stream) targetMayBeFile(kind byte) bool {
	t := s.cmd.Target
	switch {
	case s.cmd.TargetIsDir:
		return false
	case t == "/" || path.Base(t) == "." || path.Base(t) == "..":
		return false
	case kind == 'C' && strings.HasSuffix(t, "/"):
		return false // a file cannot be created at a path ending in /
	}
	return true
}

func join(base, name string) string {
	switch {
	case base == "":
		return name
	case strings.HasSuffix(base, "/"):
		return base + name
	}
	return base + "/" + name
}

// parseEntry reads "MMMM size name" of a C or D record as OpenSSH's sink
// does: four octal digits, a decimal size, a name that is one path element.
func parseEntry(text string) (mode uint32, size uint64, name string, err error) {
	if len(text) < 5 || text[4] != ' ' {
		return 0, 0, "", fmt.Errorf("mode not four digits and a space")
	}
	for _, c := range text[:4] {
		if c < '0' || c > '7' {
			return 0, 0, "", fmt.Errorf("bad mode")
		}
		mode = mode<<3 | uint32(c-'0')
	}
	sizeText, name, found := strings.Cut(text[5:], " ")
	if !found || sizeText == "" || strings.Trim(sizeText, "0123456789") != "" {
		return 0, 0, "", fmt.Errorf("size not a number followed by a space")
	}
	size, err = strconv.ParseUint(sizeText, 10, 64)
	if err != nil || size > 1<<62 {
		return 0, 0, "", fmt.Errorf("size out of range")
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return 0, 0, "", fmt.Errorf("name %q is not a single path element", name)
	}
	return mode, size, name, nil
}

// validTimes checks "mtime 0 atime 0" (four decimal numbers).
func validTimes(text string) bool {
	f := strings.Split(text, " ")
	if len(f) != 4 {
		return false
	}
	for _, n := range f {
		if n == "" || len(n) > 20 || strings.Trim(n, "0123456789") != "" {
			return false
		}
	}
	return true
}
