package sftp

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Operation kinds, by what a request does to the host's files.
const (
	KindRead     = "read"     // OPEN that can read the file
	KindWrite    = "write"    // OPEN for writing, creating, truncating or appending; hardlink@openssh.com
	KindRemove   = "remove"   // REMOVE
	KindRename   = "rename"   // RENAME, posix-rename@openssh.com
	KindMkdir    = "mkdir"    // MKDIR
	KindRmdir    = "rmdir"    // RMDIR
	KindSetstat  = "setstat"  // SETSTAT, FSETSTAT, lsetstat@openssh.com
	KindSymlink  = "symlink"  // SYMLINK
	KindList     = "list"     // OPENDIR
	KindStat     = "stat"     // STAT, LSTAT, statvfs@openssh.com
	KindRealpath = "realpath" // REALPATH, expand-path@openssh.com, home-directory
	KindReadlink = "readlink" // READLINK
	KindOther    = "other"    // any other EXTENDED request (Ext names it)
)

// File directions.
const (
	Upload   = "upload"
	Download = "download"
)

// Sentinel errors. Every error from a Stream wraps one of them; after any
// error the Stream is broken and the channel must be closed.
var (
	// ErrLimit: the peer exceeded one of the Limits.
	ErrLimit = errors.New("sftp: limit exceeded")
	// ErrProtocol: the peer broke the protocol (a malformed packet wraps it too).
	ErrProtocol = errors.New("sftp: protocol violation")
)

// Limits bound what an untrusted peer can make a Stream hold. Zero fields
// take the defaults.
type Limits struct {
	// MaxPacket is the largest packet length field accepted, in either
	// direction. Default 256 KiB + 1 KiB: OpenSSH sends and accepts packets
	// of up to 256 KiB.
	MaxPacket uint32
	// MaxPending is the number of requests forwarded and not yet answered.
	// Default 1024 (OpenSSH's sftp keeps at most 64 in flight by default).
	MaxPending int
	// MaxHandles is the number of open handles. Default 256.
	MaxHandles int
	// MaxPath is the longest path in a request, in bytes. Default 4096.
	MaxPath int
}

// DefaultLimits are the limits a zero Limits stands for.
var DefaultLimits = Limits{MaxPacket: 256<<10 + 1<<10, MaxPending: 1024, MaxHandles: 256, MaxPath: 4096}

func (l Limits) withDefaults() Limits {
	if l.MaxPacket == 0 {
		l.MaxPacket = DefaultLimits.MaxPacket
	}
	if l.MaxPending <= 0 {
		l.MaxPending = DefaultLimits.MaxPending
	}
	if l.MaxHandles <= 0 {
		l.MaxHandles = DefaultLimits.MaxHandles
	}
	if l.MaxPath <= 0 {
		l.MaxPath = DefaultLimits.MaxPath
	}
	return l
}

// Op is one operation a client asked for, by what it does to the host.
type Op struct {
	// Seq numbers the operations of a Stream from 1, so a File can name the
	// operation that opened it even after the client reused the request id.
	Seq uint64
	// ID is the SFTP request id.
	ID uint32
	// Kind is one of the Kind constants.
	Kind string
	// Path is the path as the client sent it (for FSETSTAT, the path of the
	// handle's OPEN; for symlink the link created; for hardlink@openssh.com
	// the new name).
	Path string
	// Target is the second path: rename's new name, the symlink's or hard
	// link's target (what the link points to), copy-data's source file.
	Target string
	// Ext is the name of an EXTENDED request.
	Ext string
	// Allowed and Message are the decision, set in the Ops FromClient returns.
	Allowed bool
	Message string
}

// DecideFunc decides one operation. It may block (a person approving); it is
// called from FromClient without any lock held, so responses keep flowing.
// message is shown to the client on a refusal.
type DecideFunc func(op Op) (allow bool, message string)

// File is one file transferred through a handle.
type File struct {
	// Open is the operation that opened the handle (the read op for a
	// download, the write op for an upload).
	Open Op
	// Path is the path the handle was opened with.
	Path string
	// Direction is Upload (WRITE requests) or Download (DATA replies to READ).
	Direction string
	// Size is the number of bytes that passed.
	Size uint64
	// SHA256 is the hex SHA-256 of the bytes in the order they passed.
	SHA256 string
	// Sequential: the bytes passed in order from offset 0 without gaps or
	// overlaps, so SHA256 is the hash of the first Size bytes of the file.
	Sequential bool
	// EOF (downloads): a READ right after the last byte got end-of-file, so
	// with Sequential the bytes are the whole file.
	EOF bool
	// Complete: the handle was closed with SSH_FX_OK and no data request
	// failed.
	Complete bool
}

// Stream inspects one sftp session. FromClient and FromServer may run at
// the same time (one goroutine per direction); each must not run
// concurrently with itself.
type Stream struct {
	limits Limits
	decide DecideFunc

	in  framer // client → server; used by FromClient only
	out framer // server → client; used by FromServer only

	mu      sync.Mutex
	err     error
	inited  bool
	version uint32
	seq     uint64
	pending map[uint32]*request
	handles map[string]*handle
}

// NewStream returns a Stream for one channel. A nil decide allows everything.
func NewStream(limits Limits, decide DecideFunc) *Stream {
	limits = limits.withDefaults()
	if decide == nil {
		decide = func(Op) (bool, string) { return true, "" }
	}
	return &Stream{
		limits:  limits,
		decide:  decide,
		in:      framer{max: limits.MaxPacket},
		out:     framer{max: limits.MaxPacket},
		pending: make(map[uint32]*request),
		handles: make(map[string]*handle),
	}
}

// Version is the protocol version the server answered, 0 before VERSION.
func (s *Stream) Version() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// FromClient takes bytes the client sent, in any pieces. It returns the bytes
// to forward to the server (whole packets that were allowed), the bytes to
// send back to the client (a STATUS for each refused request), and the
// operations decided, with their outcome. A partial packet is held until the
// rest arrives.
//
// reply must reach the client between two forwards of FromServer, never in
// the middle of one (FromServer only ever returns whole packets, so writing
// both under one lock is enough). forward may point into p: it is valid until
// the next call.
func (s *Stream) FromClient(p []byte) (forward, reply []byte, ops []Op, err error) {
	if err := s.broken(); err != nil {
		return nil, nil, nil, err
	}
	forward, err = s.in.frame(p, func(pkt []byte) (bool, error) {
		var fwd bool
		var rep []byte
		var err error
		fwd, rep, ops, err = s.clientPacket(pkt, ops)
		reply = append(reply, rep...)
		return fwd, err
	})
	if err != nil {
		return forward, reply, ops, s.setErr(fmt.Errorf("from client: %w", err))
	}
	return forward, reply, ops, nil
}

// FromServer takes bytes the server sent, in any pieces. It returns the bytes
// to forward to the client (whole packets only) and the files whose handles
// were closed.
func (s *Stream) FromServer(p []byte) (forward []byte, files []File, err error) {
	if err := s.broken(); err != nil {
		return nil, nil, err
	}
	forward, err = s.out.frame(p, func(pkt []byte) (bool, error) {
		var err error
		files, err = s.serverPacket(pkt, files)
		return true, err
	})
	if err != nil {
		return forward, files, s.setErr(fmt.Errorf("from server: %w", err))
	}
	return forward, files, nil
}

// Close ends the stream and returns the files whose handles are still open,
// with Complete false, in the order they were opened.
func (s *Stream) Close() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]*handle, 0, len(s.handles))
	for _, h := range s.handles {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *handle) int { return cmpSeq(a.seq, b.seq) })
	var files []File
	for _, h := range hs {
		files = h.finish(files, false)
	}
	clear(s.handles)
	clear(s.pending)
	return files
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Stream) broken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Stream) setErr(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	return err
}
