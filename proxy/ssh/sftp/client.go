package sftp

import (
	"fmt"
	"path"
)

// Status codes the gateway answers with itself.
const (
	fxFailure       = 4
	fxOpUnsupported = 8
)

// deniedByPolicy is the refusal message when Decide gives none.
const deniedByPolicy = "permission denied by policy"

// request is a forwarded request waiting for its response.
type request struct {
	id     uint32
	typ    byte
	h      *handle // READ, WRITE, CLOSE: the handle it works on
	offset uint64  // READ
	length uint32  // READ
	open   *handle // OPEN, OPENDIR: the handle a HANDLE reply binds
}

// call is what one client request needs before it may be forwarded.
type call struct {
	req     request
	ops     []Op   // decided in order; all must be allowed
	deny    uint32 // refused without asking, with this status (0: not refused)
	denyMsg string
	forward func() // run under the lock once the request is forwarded
}

// requestParsers reads each request type (after its id) into a call. One
// function per request kind; the dispatch is the map.
var requestParsers = map[byte]func(s *Stream, d *decoder, c *call){
	fxpOpen:     (*Stream).parseOpen,
	fxpClose:    (*Stream).parseClose,
	fxpRead:     (*Stream).parseRead,
	fxpWrite:    (*Stream).parseWrite,
	fxpLstat:    pathOp(KindStat, false),
	fxpStat:     pathOp(KindStat, false),
	fxpFstat:    (*Stream).parseOnHandle,
	fxpSetstat:  pathOp(KindSetstat, true),
	fxpFsetstat: (*Stream).parseFsetstat,
	fxpOpendir:  (*Stream).parseOpendir,
	fxpReaddir:  (*Stream).parseReaddir,
	fxpRemove:   pathOp(KindRemove, false),
	fxpMkdir:    pathOp(KindMkdir, true),
	fxpRmdir:    pathOp(KindRmdir, false),
	fxpRealpath: pathOp(KindRealpath, false),
	fxpReadlink: pathOp(KindReadlink, false),
	fxpRename:   (*Stream).parseRename,
	fxpSymlink:  (*Stream).parseSymlink,
	fxpExtended: (*Stream).parseExtended,
}

// clientPacket handles one whole client packet: decides it and says whether
// to forward it or what to answer instead.
func (s *Stream) clientPacket(pkt []byte, ops []Op) (forward bool, reply []byte, _ []Op, err error) {
	typ := pkt[4]
	d := &decoder{b: pkt[5:]}
	s.mu.Lock()
	c, err := s.parseRequest(typ, d)
	s.mu.Unlock()
	if err != nil {
		return false, nil, ops, err
	}
	if c == nil { // INIT
		return true, nil, ops, nil
	}
	if c.deny != 0 {
		return false, statusPacket(c.req.id, c.deny, c.denyMsg), ops, nil
	}
	for _, op := range c.ops {
		op.Allowed, op.Message = s.decide(op)
		ops = append(ops, op)
		if !op.Allowed {
			msg := op.Message
			if msg == "" {
				msg = deniedByPolicy
			}
			return false, statusPacket(c.req.id, fxPermissionDenied, msg), ops, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.track(&c.req); err != nil {
		return false, nil, ops, err
	}
	if c.forward != nil {
		c.forward()
	}
	return true, nil, ops, nil
}

// parseRequest reads a request under the lock. It returns nil for INIT.
func (s *Stream) parseRequest(typ byte, d *decoder) (*call, error) {
	if typ == fxpInit {
		if s.inited {
			return nil, fmt.Errorf("%w: a second INIT", ErrProtocol)
		}
		d.u32("INIT version")
		if d.err != nil {
			return nil, d.err
		}
		s.inited = true
		return nil, nil
	}
	if !s.inited {
		return nil, fmt.Errorf("%w: packet type %d before INIT", ErrProtocol, typ)
	}
	c := &call{req: request{id: d.u32("request id"), typ: typ}}
	if d.err != nil {
		return nil, d.err
	}
	parse := requestParsers[typ]
	if parse == nil {
		c.deny, c.denyMsg = fxOpUnsupported, fmt.Sprintf("packet type %d is not part of SFTP version 3", typ)
		return c, nil
	}
	parse(s, d, c)
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// track records a forwarded request until its response.
func (s *Stream) track(r *request) error {
	if _, dup := s.pending[r.id]; dup {
		return fmt.Errorf("%w: request id %d reused while still outstanding", ErrProtocol, r.id)
	}
	if len(s.pending) >= s.limits.MaxPending {
		return fmt.Errorf("%w: more than %d outstanding requests", ErrLimit, s.limits.MaxPending)
	}
	s.pending[r.id] = r
	return nil
}

// op adds an operation to decide.
func (s *Stream) op(c *call, kind, path, target, ext string) {
	s.seq++
	c.ops = append(c.ops, Op{Seq: s.seq, ID: c.req.id, Kind: kind, Path: path, Target: target, Ext: ext})
}

// pathOp parses the requests that are one path (and, with attrs, an ATTRS).
func pathOp(kind string, attrs bool) func(s *Stream, d *decoder, c *call) {
	return func(s *Stream, d *decoder, c *call) {
		p := d.path("path", s.limits.MaxPath)
		if attrs {
			d.attrs()
		}
		s.op(c, kind, p, "", "")
	}
}

// parseOpen decides an OPEN by what the server will do with it. OpenSSH's
// sftp-server opens O_RDONLY unless WRITE is set, so any OPEN without WRITE
// (even one with only CREAT) can read; CREAT, TRUNC and APPEND change the
// file even without WRITE.
func (s *Stream) parseOpen(d *decoder, c *call) {
	p := d.path("filename", s.limits.MaxPath)
	pflags := d.u32("pflags")
	d.attrs()
	if d.err != nil {
		return
	}
	h := &handle{path: p, canRead: pflags&fxfRead != 0 || pflags&fxfWrite == 0, canWrite: pflags&fxfWrite != 0}
	if h.canRead {
		s.op(c, KindRead, p, "", "")
		h.readOp = c.ops[len(c.ops)-1]
		if pflags&fxfRead != 0 {
			h.down = newTransfer(h.readOp)
		}
	}
	if pflags&(fxfWrite|fxfAppend|fxfCreat|fxfTrunc) != 0 {
		s.op(c, KindWrite, p, "", "")
		h.up = newTransfer(c.ops[len(c.ops)-1])
	}
	h.seq = c.ops[0].Seq
	c.req.open = h
}

func (s *Stream) parseOpendir(d *decoder, c *call) {
	p := d.path("path", s.limits.MaxPath)
	s.op(c, KindList, p, "", "")
	c.req.open = &handle{path: p, dir: true, seq: s.seq}
}

// handleArg reads a handle and looks it up; an unknown one is refused here
// (the server would refuse it too, and an operation on it was never decided).
func (s *Stream) handleArg(d *decoder, c *call) *handle {
	b := d.bytes("handle")
	if d.err != nil {
		return nil
	}
	h := s.handles[string(b)]
	if h == nil && c.deny == 0 {
		c.deny, c.denyMsg = fxFailure, "unknown handle"
	}
	return h
}

// fileHandle reads a handle that must be an open file.
func (s *Stream) fileHandle(d *decoder, c *call) *handle {
	h := s.handleArg(d, c)
	if h != nil && h.dir {
		c.deny, c.denyMsg = fxFailure, "handle is a directory"
		return nil
	}
	return h
}

func (s *Stream) parseClose(d *decoder, c *call) { c.req.h = s.handleArg(d, c) }

func (s *Stream) parseOnHandle(d *decoder, c *call) { s.handleArg(d, c) }

func (s *Stream) parseReaddir(d *decoder, c *call) {
	h := s.handleArg(d, c)
	if h != nil && !h.dir {
		c.deny, c.denyMsg = fxFailure, "handle is not a directory"
	}
}

func (s *Stream) parseRead(d *decoder, c *call) {
	h := s.fileHandle(d, c)
	c.req.offset = d.u64("offset")
	c.req.length = d.u32("length")
	if h == nil || d.err != nil {
		return
	}
	if !h.canRead {
		c.deny, c.denyMsg = fxPermissionDenied, "handle not opened for reading"
		return
	}
	c.req.h = h
	c.forward = func() {
		if h.down == nil {
			h.down = newTransfer(h.readOp)
		}
	}
}

func (s *Stream) parseWrite(d *decoder, c *call) {
	h := s.fileHandle(d, c)
	offset := d.u64("offset")
	data := d.bytes("data")
	if h == nil || d.err != nil {
		return
	}
	if !h.canWrite {
		c.deny, c.denyMsg = fxPermissionDenied, "handle not opened for writing"
		return
	}
	c.req.h = h
	c.forward = func() { h.up.add(offset, data) }
}

func (s *Stream) parseFsetstat(d *decoder, c *call) {
	h := s.handleArg(d, c)
	d.attrs()
	if h != nil {
		s.op(c, KindSetstat, h.path, "", "")
	}
}

func (s *Stream) parseRename(d *decoder, c *call) {
	from := d.path("old path", s.limits.MaxPath)
	to := d.path("new path", s.limits.MaxPath)
	s.renameOps(c, from, to, "")
}

// renameOps decides a rename as what it does: the rename, a write of the new name and a
// removal of the old one, so that a rule on where writes may land sees where it lands.
func (s *Stream) renameOps(c *call, from, to, ext string) {
	s.op(c, KindRename, from, to, ext)
	s.op(c, KindWrite, to, from, ext)
	s.op(c, KindRemove, from, "", ext)
}

// parseSymlink reads SYMLINK as OpenSSH sends it: the link's target first,
// then the link to create (the draft says the reverse; OpenSSH's server and
// client agree on this order).
func (s *Stream) parseSymlink(d *decoder, c *call) {
	target := d.path("symlink target", s.limits.MaxPath)
	link := d.path("link path", s.limits.MaxPath)
	s.op(c, KindSymlink, link, target, "")
	// What is written through the link lands at its target: decided as a write there too.
	if !path.IsAbs(target) {
		target = path.Join(path.Dir(link), target)
	}
	s.op(c, KindWrite, target, link, "")
}
