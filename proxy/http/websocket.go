package http

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/schemas"
)

// After an allowed upgrade the gateway relays the connection's bytes as they are and
// reads them as they pass: WebSocket frames (RFC 6455) are parsed in both directions and
// each message is handed to a recorder (http.ws, or the profile's: a Kubernetes exec's
// streams). Compression extensions are not offered to the service (the gateway reads what
// it records), so a frame with a reserved bit set, an unknown opcode, a client frame that is
// not masked or a control frame that is too long breaks the protocol: the connection is cut.

// maxRecordedMessage bounds what is kept of one message for its recorder.
const maxRecordedMessage = 64 << 10

var errWSProtocol = errors.New("websocket protocol violation")

// wsParser reads the frames of one direction.
type wsParser struct {
	client bool // frames from the client (masked)
	hdr    [14]byte
	nhdr   int
	need   int    // header bytes needed
	left   uint64 // payload bytes left in the frame
	key    [4]byte
	masked bool
	koff   int
	op     byte
	fin    bool
	// the message being assembled
	msgOp   byte
	msg     []byte
	msgSize uint64
	ctl     []byte
	deliver func(op string, data []byte, size uint64, complete bool)
	// pieces, when set, takes data messages' payloads as they pass (PieceRecorder).
	pieces  func(op string, p []byte, first, last bool)
	scratch []byte
	started bool // pieces: the current message's first piece went out
}

func newWSParser(client bool, deliver func(op string, data []byte, size uint64, complete bool)) *wsParser {
	return &wsParser{client: client, need: 2, deliver: deliver}
}

func opName(op byte) string {
	switch op {
	case 1:
		return "text"
	case 2:
		return "binary"
	case 8:
		return "close"
	case 9:
		return "ping"
	case 10:
		return "pong"
	}
	return "unknown"
}

// feed reads p.
func (w *wsParser) feed(p []byte) error {
	for len(p) > 0 {
		if w.left == 0 && w.nhdr < w.need {
			n := copy(w.hdr[w.nhdr:w.need], p)
			w.nhdr += n
			p = p[n:]
			if w.nhdr < w.need {
				return nil
			}
			if done, err := w.header(); err != nil {
				return err
			} else if !done {
				continue
			}
			if w.left == 0 {
				w.frameEnd()
			}
			continue
		}
		n := uint64(len(p))
		if n > w.left {
			n = w.left
		}
		w.payload(p[:n])
		p = p[n:]
		w.left -= n
		if w.left == 0 {
			w.frameEnd()
		}
	}
	return nil
}

// header parses the header once its bytes are in; done reports whether it is complete (an
// extended length or mask key may need more bytes).
func (w *wsParser) header() (bool, error) {
	b0, b1 := w.hdr[0], w.hdr[1]
	need := 2
	switch b1 & 0x7f {
	case 126:
		need += 2
	case 127:
		need += 8
	}
	masked := b1&0x80 != 0
	if masked {
		need += 4
	}
	if w.nhdr < need {
		w.need = need
		return false, nil
	}
	if b0&0x70 != 0 {
		return false, errWSProtocol
	}
	op := b0 & 0x0f
	if op > 2 && op < 8 || op > 10 {
		return false, errWSProtocol
	}
	if w.client != masked {
		return false, errWSProtocol
	}
	var l uint64
	off := 2
	switch b1 & 0x7f {
	case 126:
		l = uint64(w.hdr[2])<<8 | uint64(w.hdr[3])
		off = 4
	case 127:
		for i := 0; i < 8; i++ {
			l = l<<8 | uint64(w.hdr[2+i])
		}
		off = 10
	default:
		l = uint64(b1 & 0x7f)
	}
	if op >= 8 && (l > 125 || b0&0x80 == 0) {
		return false, errWSProtocol
	}
	if masked {
		copy(w.key[:], w.hdr[off:off+4])
	}
	w.masked, w.koff, w.op, w.fin, w.left = masked, 0, op, b0&0x80 != 0, l
	w.nhdr, w.need = 0, 2
	if op != 0 && op < 8 {
		if w.msgOp != 0 {
			return false, errWSProtocol // a new message before the last one ended
		}
		w.msgOp, w.msg, w.msgSize = op, w.msg[:0], 0
	} else if op == 0 && w.msgOp == 0 {
		return false, errWSProtocol
	}
	if op >= 8 {
		w.ctl = w.ctl[:0]
	}
	return true, nil
}

func (w *wsParser) payload(p []byte) {
	if w.op >= 8 {
		w.ctl = w.unmask(w.ctl, p)
		return
	}
	if w.pieces != nil {
		w.scratch = w.unmask(w.scratch[:0], p)
		w.pieces(opName(w.msgOp), w.scratch, !w.started, false)
		w.started = true
		return
	}
	w.msgSize += uint64(len(p))
	if room := maxRecordedMessage - len(w.msg); room > 0 {
		if len(p) > room {
			p = p[:room]
		}
		w.msg = w.unmask(w.msg, p)
	} else if w.masked {
		w.koff = (w.koff + len(p)) & 3
	}
}

func (w *wsParser) unmask(dst, p []byte) []byte {
	start := len(dst)
	dst = append(dst, p...)
	if w.masked {
		for i := start; i < len(dst); i++ {
			dst[i] ^= w.key[w.koff&3]
			w.koff++
		}
	}
	return dst
}

func (w *wsParser) frameEnd() {
	if w.op >= 8 {
		w.deliver(opName(w.op), w.ctl, uint64(len(w.ctl)), true)
		return
	}
	if w.fin {
		if w.pieces != nil {
			w.pieces(opName(w.msgOp), nil, !w.started, true)
			w.started = false
		} else {
			w.deliver(opName(w.msgOp), w.msg, w.msgSize, w.msgSize <= maxRecordedMessage)
		}
		w.msgOp = 0
	}
}

// upgradeTap is the service's side of an upgraded connection, read as it is relayed:
// Read carries the service's bytes to the client, Write the client's to the service.
type upgradeTap struct {
	rwc       io.ReadWriteCloser
	rec       MessageRecorder
	fromSrv   *wsParser
	fromCli   *wsParser
	closeOnce sync.Once
	mu        sync.Mutex // orders the parsers' deliveries with closeRecorder
	closed    bool
}

func newUpgradeTap(rwc io.ReadWriteCloser, rec MessageRecorder, websocket bool) *upgradeTap {
	t := &upgradeTap{rwc: rwc, rec: rec}
	if websocket {
		t.fromSrv = newWSParser(false, func(op string, d []byte, size uint64, complete bool) { rec.Message(false, op, d, size, complete) })
		t.fromCli = newWSParser(true, func(op string, d []byte, size uint64, complete bool) { rec.Message(true, op, d, size, complete) })
		if pr, ok := rec.(PieceRecorder); ok {
			t.fromSrv.pieces = func(op string, p []byte, first, last bool) { pr.Piece(false, op, p, first, last) }
			t.fromCli.pieces = func(op string, p []byte, first, last bool) { pr.Piece(true, op, p, first, last) }
		}
	}
	return t
}

// RawRecorder is a MessageRecorder of an upgrade other than WebSocket that parses the raw
// bytes itself (SPDY): an error cuts the connection (what cannot be read is not relayed).
type RawRecorder interface {
	Raw(fromClient bool, p []byte) error
}

// raw hands raw bytes to the recorder.
func (t *upgradeTap) raw(fromClient bool, p []byte) error {
	if rr, ok := t.rec.(RawRecorder); ok {
		return rr.Raw(fromClient, p)
	}
	t.rec.Message(fromClient, "raw", p, uint64(len(p)), true)
	return nil
}

// guard runs f, the reading of one direction's bytes, unless the recorder is closed;
// a panic in a parser is an error that cuts the connection (it runs on a copy goroutine of
// the reverse proxy, where a panic would end the process).
func (t *upgradeTap) guard(f func() error) (err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading the upgraded connection failed: %v", r)
		}
	}()
	return f()
}

func (t *upgradeTap) Read(p []byte) (int, error) {
	n, err := t.rwc.Read(p)
	if n > 0 {
		perr := t.guard(func() error {
			if t.fromSrv == nil {
				return t.raw(false, p[:n])
			}
			return t.fromSrv.feed(p[:n])
		})
		if perr != nil {
			t.Close()
			return 0, perr
		}
	}
	return n, err
}

func (t *upgradeTap) Write(p []byte) (int, error) {
	if err := t.guard(func() error {
		if t.fromCli == nil {
			return t.raw(true, p)
		}
		return t.fromCli.feed(p)
	}); err != nil {
		t.Close()
		return 0, err
	}
	return t.rwc.Write(p)
}

func (t *upgradeTap) Close() error {
	err := t.rwc.Close()
	t.closeRecorder()
	return err
}

// closeRecorder closes the recorder once; messages after it are not recorded.
func (t *upgradeTap) closeRecorder() {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		t.rec.Close()
	})
}

// wsRecorder records WebSocket messages as http.ws events, bounded by the resource's
// recording limit.
type wsRecorder struct {
	x       *exchange
	mu      sync.Mutex
	start   time.Time
	frames  []schemas.WSFrame
	size    int
	chunk   uint32
	total   int64
	limit   int64
	dropped uint64
	last    time.Time
}

func newWSRecorder(x *exchange, _ *respMask) *wsRecorder {
	return &wsRecorder{x: x, start: time.Now(), last: time.Now(), limit: x.Backend.RecordBodyBytes * 16}
}

func (r *wsRecorder) Message(fromClient bool, op string, data []byte, size uint64, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.total+int64(len(data)) > r.limit {
		r.dropped += size
		return
	}
	from := "server"
	if fromClient {
		from = "client"
	}
	f := schemas.WSFrame{TUS: uint64(time.Since(r.start).Microseconds()), From: from, Op: op, Bytes: size}
	if op == "binary" || !utf8.Valid(data) {
		f.Data = base64.StdEncoding.EncodeToString(data)
	} else {
		f.Data = string(data)
	}
	r.total += int64(len(data))
	r.frames = append(r.frames, f)
	r.size += len(f.Data)
	if r.size >= bodyChunkBytes || time.Since(r.last) > 200*time.Millisecond {
		r.emitLocked()
	}
}

func (r *wsRecorder) emitLocked() {
	r.last = time.Now()
	if len(r.frames) == 0 && r.dropped == 0 {
		return
	}
	r.x.cs.sess.Record(&schemas.HttpWs{QueryID: r.x.QueryID, Chunk: r.chunk, Frames: r.frames, Dropped: r.dropped})
	r.chunk++
	r.frames, r.size, r.dropped = nil, 0, 0
}

func (r *wsRecorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emitLocked()
}
