package sftp

import "fmt"

// serverPacket handles one whole server packet.
func (s *Stream) serverPacket(pkt []byte, files []File) ([]File, error) {
	typ := pkt[4]
	d := &decoder{b: pkt[5:]}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == 0 {
		if typ != fxpVersion {
			return files, fmt.Errorf("%w: packet type %d before VERSION", ErrProtocol, typ)
		}
		v := d.u32("VERSION version")
		if d.err != nil {
			return files, d.err
		}
		if v != 3 {
			return files, fmt.Errorf("%w: the server speaks SFTP version %d; the gateway inspects version 3 only", ErrProtocol, v)
		}
		s.version = v
		return files, nil
	}
	if typ == fxpVersion {
		return files, fmt.Errorf("%w: a second VERSION", ErrProtocol)
	}
	id := d.u32("response id")
	if d.err != nil {
		return files, d.err
	}
	req := s.pending[id]
	if req == nil {
		return files, fmt.Errorf("%w: response type %d to request id %d, which is not outstanding", ErrProtocol, typ, id)
	}
	delete(s.pending, id)
	switch typ {
	case fxpStatus:
		code := d.u32("status code")
		if d.err != nil {
			return files, d.err
		}
		return s.onStatus(req, code, files), nil
	case fxpHandle:
		return files, s.onHandle(req, d)
	case fxpData:
		return files, s.onData(req, d)
	case fxpName, fxpAttrs, fxpExtendedReply:
		return files, nil
	}
	return files, fmt.Errorf("%w: unknown response type %d", ErrProtocol, typ)
}

func (s *Stream) onStatus(req *request, code uint32, files []File) []File {
	switch req.typ {
	case fxpClose:
		// OpenSSH forgets the handle whatever the outcome.
		h := req.h
		if s.handles[h.id] == h {
			delete(s.handles, h.id)
		}
		if !h.dir && !h.closed {
			h.closed = true
			files = h.finish(files, code == fxOK)
		}
	case fxpRead:
		if code == fxEOF {
			req.h.down.atEOF(req.offset)
		} else {
			req.h.down.failed = true
		}
	case fxpWrite:
		if code != fxOK {
			req.h.up.failed = true
		}
	}
	return files
}

func (s *Stream) onHandle(req *request, d *decoder) error {
	if req.open == nil {
		return fmt.Errorf("%w: HANDLE in answer to packet type %d", ErrProtocol, req.typ)
	}
	b := d.bytes("handle")
	if d.err != nil {
		return d.err
	}
	if len(b) > maxHandleLen {
		return fmt.Errorf("%w: handle of %d bytes (at most %d)", ErrProtocol, len(b), maxHandleLen)
	}
	id := string(b)
	if _, dup := s.handles[id]; dup {
		return fmt.Errorf("%w: the server returned handle %q while it is still open", ErrProtocol, id)
	}
	if len(s.handles) >= s.limits.MaxHandles {
		return fmt.Errorf("%w: more than %d open handles", ErrLimit, s.limits.MaxHandles)
	}
	req.open.id = id
	s.handles[id] = req.open
	return nil
}

func (s *Stream) onData(req *request, d *decoder) error {
	if req.typ != fxpRead {
		return fmt.Errorf("%w: DATA in answer to packet type %d", ErrProtocol, req.typ)
	}
	data := d.bytes("data")
	if d.err != nil {
		return d.err
	}
	if uint64(len(data)) > uint64(req.length) {
		return fmt.Errorf("%w: DATA of %d bytes for a READ of %d", ErrProtocol, len(data), req.length)
	}
	req.h.down.add(req.offset, data)
	return nil
}
