package scp

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// Sentinel errors. Every error from a Stream wraps one of them; after any
// error the Stream is broken and the channel must be closed.
var (
	// ErrLimit: a line or the directory nesting is past the Limits.
	ErrLimit = errors.New("scp: limit exceeded")
	// ErrProtocol: a side broke the protocol: a malformed record, a name with
	// "/" or "..", bytes out of turn.
	ErrProtocol = errors.New("scp: protocol violation")
)

// Limits bound what an untrusted peer can make a Stream hold. Zero fields
// take the defaults.
type Limits struct {
	// MaxLine is the longest record or message line, newline included.
	// Default 4096 (OpenSSH's own buffer is 2048).
	MaxLine int
	// MaxDepth is the deepest directory nesting. Default 256.
	MaxDepth int
}

// DefaultLimits are the limits a zero Limits stands for.
var DefaultLimits = Limits{MaxLine: 4096, MaxDepth: 256}

// Op is one upload the client asks for, decided before it reaches the host.
type Op struct {
	// Kind is "write" (a C record: a file) or "mkdir" (a D record).
	Kind string
	// Path is where the host puts it (see File.Path and File.Alt: a record
	// whose place is not certain is decided once for each place).
	Path string
	// Mode is the permission bits the client asks for (setuid included).
	Mode uint32
}

// Op kinds.
const (
	KindWrite = "write"
	KindMkdir = "mkdir"
)

// DecideFunc decides one upload. It may block; it is called without any lock
// held. message is sent to the client on a refusal.
type DecideFunc func(op Op) (allow bool, message string)

// File is one file that went through.
type File struct {
	// Path is the file on the host: the target, the directories entered and
	// the name, joined as the host does.
	Path string
	// Alt is set for an upload whose target may name the file (or, under a
	// D record, the directory) itself: the host writes Path when the target
	// is an existing directory and Alt otherwise (OpenSSH's sink checks at
	// run time; the gateway cannot know which).
	Alt string
	// Direction is Upload or Download.
	Direction string
	// Mode is the permission bits of the C record.
	Mode uint32
	// Size is the number of content bytes that passed.
	Size uint64
	// SHA256 is the hex SHA-256 of those bytes.
	SHA256 string
	// Complete: all the announced bytes passed, the source ended them with
	// 0x00 and the sink answered 0x00.
	Complete bool
}

// What a sink response answers.
type awaiting int

const (
	awaitNothing awaiting = iota // the source's turn
	awaitReady
	awaitTimes
	awaitFile   // a C record
	awaitDir    // a D record
	awaitEnd    // an E record
	awaitClosed // a file's content and trailer
)

// What the source is sending, on its turn.
type sourceState int

const (
	srcRecord  sourceState = iota // a record or message line
	srcContent                    // a file's bytes
	srcTrailer                    // the byte after them
)

// dir is a directory entered with D.
type dir struct{ path, alt string }

// transfer is the file whose C record is being answered or whose content is
// passing.
type transfer struct {
	File
	announced uint64
	h         hash.Hash
	trailerOK bool
}

// Stream inspects one scp exec. FromClient and FromServer may run at the same
// time; each must not run concurrently with itself.
type Stream struct {
	cmd    Command
	limits Limits
	decide DecideFunc

	mu       sync.Mutex
	err      error
	done     bool // a fatal message ended the transfer
	awaiting awaiting
	src      sourceState
	srcLine  []byte // partial record or message from the source
	sinkLine []byte // partial response from the sink
	pending  *dir   // the D record being answered
	cur      *transfer
	dirs     []dir
}

// NewStream returns a Stream for one scp exec. A nil decide allows everything.
func NewStream(cmd Command, limits Limits, decide DecideFunc) *Stream {
	if limits.MaxLine <= 0 {
		limits.MaxLine = DefaultLimits.MaxLine
	}
	if limits.MaxDepth <= 0 {
		limits.MaxDepth = DefaultLimits.MaxDepth
	}
	if decide == nil {
		decide = func(Op) (bool, string) { return true, "" }
	}
	return &Stream{cmd: cmd, limits: limits, decide: decide, awaiting: awaitReady}
}

// FromClient takes bytes the client sent. It returns the bytes to forward to
// the host, the bytes to answer the client with (an 0x01 line for a refused
// upload) and the files completed (a download completes with the client's
// answer).
func (s *Stream) FromClient(p []byte) (forward, reply []byte, files []File, err error) {
	if s.cmd.Direction == Upload {
		forward, reply, err = s.fromSource(p)
		return forward, reply, nil, s.wrap("from client", err)
	}
	forward, files, err = s.fromSink(p)
	return forward, nil, files, s.wrap("from client", err)
}

// FromServer takes bytes the host sent. It returns the bytes to forward to
// the client and the files completed (an upload completes with the host's
// answer). A response line split over several writes is held until whole, so
// a reply from FromClient can be written between two forwards.
func (s *Stream) FromServer(p []byte) (forward []byte, files []File, err error) {
	if s.cmd.Direction == Upload {
		forward, files, err = s.fromSink(p)
		return forward, files, s.wrap("from server", err)
	}
	forward, _, err = s.fromSource(p)
	return forward, nil, s.wrap("from server", err)
}

// Close ends the stream and returns the file still passing, incomplete.
func (s *Stream) Close() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	var files []File
	if s.cur != nil && (s.awaiting == awaitClosed || s.awaiting == awaitNothing) {
		files = append(files, s.cur.finish(false))
	}
	s.cur = nil
	return files
}

func (s *Stream) wrap(dir string, err error) error {
	if err == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("%s: %w", dir, err)
	}
	return s.err
}

func (t *transfer) finish(ok bool) File {
	f := t.File
	f.SHA256 = hex.EncodeToString(t.h.Sum(nil))
	f.Complete = ok && t.trailerOK && f.Size == t.announced
	return f
}

func newTransfer(f File, size uint64) *transfer {
	return &transfer{File: f, announced: size, h: sha256.New()}
}
