package scp

import "fmt"

// fromSink follows the sink's side: one response per record or file.
func (s *Stream) fromSink(p []byte) (forward []byte, files []File, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, nil, s.err
	}
	for len(p) > 0 {
		if s.done {
			return forward, files, fmt.Errorf("%w: the sink sent data after a fatal error", ErrProtocol)
		}
		if s.awaiting == awaitNothing {
			return forward, files, fmt.Errorf("%w: the sink sent data out of turn", ErrProtocol)
		}
		if len(s.sinkLine) == 0 {
			switch p[0] {
			case 0:
				forward = append(forward, 0)
				p = p[1:]
				files = s.answered(true, files)
				continue
			case 1, 2:
			default:
				return forward, files, fmt.Errorf("%w: response byte %#x", ErrProtocol, p[0])
			}
		}
		var line []byte
		line, p, err = s.readLine(&s.sinkLine, p)
		if err != nil || line == nil {
			return forward, files, err
		}
		forward = append(forward, line...)
		if line[0] == 2 {
			s.done = true
		}
		files = s.answered(false, files)
	}
	return forward, files, nil
}

// answered moves on after the sink's response to what it was awaiting.
func (s *Stream) answered(ok bool, files []File) []File {
	switch s.awaiting {
	case awaitFile:
		if ok {
			s.src = srcContent
			if s.cur.announced == 0 {
				s.src = srcTrailer
			}
		} else {
			s.cur = nil // the sink refused it: the source skips it
		}
	case awaitDir:
		if ok {
			s.dirs = append(s.dirs, *s.pending)
		}
		s.pending = nil
	case awaitEnd:
		s.dirs = s.dirs[:len(s.dirs)-1]
	case awaitClosed:
		files = append(files, s.cur.finish(ok))
		s.cur = nil
	}
	s.awaiting = awaitNothing
	return files
}
