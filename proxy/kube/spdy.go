package kube

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream/spdy"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/schemas"
)

// kubectl older than 1.30, or told to (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false,
// KUBECTL_PORT_FORWARD_WEBSOCKETS=false), streams over SPDY/3.1: the client opens a
// stream per channel with a SYN_STREAM whose (zlib-compressed) headers name its type —
// stdin, stdout, stderr, error, resize for exec and attach; data and error, with a port,
// for port-forward — and each stream's bytes are DATA frames. The gateway relays the
// connection's bytes as they are and reads the frames of each direction as they pass
// (each direction has its own header decompression state): an exec's streams are handed to
// the terminal recorder as the channel.k8s.io messages of WebSocket would be, so that both
// are recorded the same; a port-forward's connections are recorded by their port and byte
// counts. Bytes that are not SPDY/3.1 frames, a control frame over the size limit or too
// many open streams stop the recording, which is marked failed.

// maxSPDYFrame bounds a control frame's payload (a data frame is read as it passes).
const maxSPDYFrame = 1 << 20

// maxSPDYStreams bounds the streams open at once (an exec has five; a port-forward two
// per connection).
const maxSPDYStreams = 512

// maxSPDYStatus bounds what is kept of an exec's error stream and of a resize message.
const maxSPDYStatus = 64 << 10

// errSPDYProtocol is bytes that are not SPDY/3.1 frames.
var errSPDYProtocol = errors.New("spdy protocol violation")

// spdySink is what the streams' data is recorded by: an exec's terminal or a port-forward.
type spdySink interface {
	// data is a data frame of a stream (fin: the sender's half of it ends with it).
	data(fromClient bool, s *spdyStream, p []byte)
	// closed is a stream's end (both halves closed, reset, or the connection's end).
	closed(s *spdyStream)
	// end is the connection's end.
	end()
}

// spdyStream is one SPDY stream of the connection.
type spdyStream struct {
	id      spdy.StreamId
	typ     string // its streamtype header
	port    string // its port header (port-forward)
	finCli  bool
	finSrv  bool
	buf     []byte // a message assembled across frames (error, resize)
	fromCli uint64 // data bytes each way
	fromSrv uint64
	errText []byte // a port-forward error stream's text
}

// spdyRecorder reads the raw bytes of a SPDY/3.1 connection, both directions.
type spdyRecorder struct {
	mu      sync.Mutex
	dirs    [2]*spdyReader // from the service, from the client
	streams map[spdy.StreamId]*spdyStream
	maxID   [2]spdy.StreamId // the highest stream opened, of the server's (even) and client's (odd)
	sink    spdySink
	fail    func(error)
	err     error
	closed  bool
}

func newSPDYRecorder(sink spdySink, fail func(error)) *spdyRecorder {
	return &spdyRecorder{streams: map[spdy.StreamId]*spdyStream{}, sink: sink, fail: fail}
}

// Message takes the raw bytes of one direction; a failure is reported once and stops the
// recording.
func (r *spdyRecorder) Message(fromClient bool, op string, data []byte, _ uint64, _ bool) {
	if op != "raw" {
		return
	}
	_ = r.Raw(fromClient, data)
}

// Raw reads bytes of one direction; an error means the bytes are not a SPDY/3.1 connection
// the gateway can record, and the connection should be cut.
func (r *spdyRecorder) Raw(fromClient bool, p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil || r.closed {
		return r.err
	}
	i := 0
	if fromClient {
		i = 1
	}
	if r.dirs[i] == nil {
		d, err := newSPDYReader()
		if err != nil {
			return r.failLocked(err)
		}
		r.dirs[i] = d
	}
	if err := r.dirs[i].feed(p, func(f spdy.Frame) error { return r.frameLocked(fromClient, f) }); err != nil {
		return r.failLocked(err)
	}
	return nil
}

func (r *spdyRecorder) failLocked(err error) error {
	r.err = err
	r.dirs = [2]*spdyReader{}
	if r.fail != nil {
		r.fail(err)
	}
	return err
}

// Close ends the recording: the streams still open are closed.
func (r *spdyRecorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	ids := make([]spdy.StreamId, 0, len(r.streams))
	for id := range r.streams {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		r.sink.closed(r.streams[id])
	}
	r.streams = nil
	r.sink.end()
}

// frameLocked dispatches one frame; the switch only dispatches.
func (r *spdyRecorder) frameLocked(fromClient bool, f spdy.Frame) error {
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		return r.openLocked(fromClient, f)
	case *spdy.SynReplyFrame:
		r.finLocked(fromClient, f.StreamId, f.CFHeader.Flags&spdy.ControlFlagFin != 0)
	case *spdy.HeadersFrame:
		r.finLocked(fromClient, f.StreamId, f.CFHeader.Flags&spdy.ControlFlagFin != 0)
	case *spdy.RstStreamFrame:
		r.endLocked(f.StreamId)
	case *spdy.DataFrame:
		return r.dataLocked(fromClient, f)
	case *spdy.PingFrame, *spdy.GoAwayFrame, *spdy.WindowUpdateFrame, *spdy.SettingsFrame:
		// flow control and connection management: nothing to record
	default:
		return fmt.Errorf("%w: unexpected frame %T", errSPDYProtocol, f)
	}
	return nil
}

func (r *spdyRecorder) openLocked(fromClient bool, f *spdy.SynStreamFrame) error {
	if _, ok := r.streams[f.StreamId]; ok {
		return fmt.Errorf("%w: stream %d opened twice", errSPDYProtocol, f.StreamId)
	}
	if len(r.streams) >= maxSPDYStreams {
		return fmt.Errorf("%w: more than %d streams open", errSPDYProtocol, maxSPDYStreams)
	}
	if f.StreamId > r.maxID[f.StreamId&1] {
		r.maxID[f.StreamId&1] = f.StreamId
	}
	s := &spdyStream{id: f.StreamId, typ: f.Headers.Get("streamtype"), port: f.Headers.Get("port")}
	r.streams[f.StreamId] = s
	if f.CFHeader.Flags&spdy.ControlFlagUnidirectional != 0 {
		// the receiver sends nothing on it
		if fromClient {
			s.finSrv = true
		} else {
			s.finCli = true
		}
	}
	r.finLocked(fromClient, f.StreamId, f.CFHeader.Flags&spdy.ControlFlagFin != 0)
	return nil
}

func (r *spdyRecorder) dataLocked(fromClient bool, f *spdy.DataFrame) error {
	s := r.streams[f.StreamId]
	if s == nil {
		if f.StreamId > r.maxID[f.StreamId&1] {
			return fmt.Errorf("%w: data on stream %d, never opened", errSPDYProtocol, f.StreamId)
		}
		return nil // data after a reset may still be in flight: the stream is over
	}
	if len(f.Data) > 0 {
		if fromClient {
			s.fromCli += uint64(len(f.Data))
		} else {
			s.fromSrv += uint64(len(f.Data))
		}
		r.sink.data(fromClient, s, f.Data)
	}
	r.finLocked(fromClient, f.StreamId, f.Flags&spdy.DataFlagFin != 0)
	return nil
}

// finLocked closes the sender's half of a stream; a stream closed both ways is over.
func (r *spdyRecorder) finLocked(fromClient bool, id spdy.StreamId, fin bool) {
	s := r.streams[id]
	if s == nil || !fin {
		return
	}
	if fromClient {
		s.finCli = true
	} else {
		s.finSrv = true
	}
	if s.finCli && s.finSrv {
		r.endLocked(id)
	}
}

func (r *spdyRecorder) endLocked(id spdy.StreamId) {
	if s := r.streams[id]; s != nil {
		delete(r.streams, id)
		r.sink.closed(s)
	}
}

// spdyReader reads the frames of one direction: a control frame's bytes are gathered until
// it is whole, then read by the SPDY framer (which keeps the direction's header
// decompression state) from them alone; a data frame's payload is passed on as it comes,
// so that a data frame of any size SPDY allows (16 MiB) is read without holding it.
type spdyReader struct {
	buf    []byte
	need   int
	data   spdy.DataFrame // the data frame being passed on
	left   int            // its payload bytes still to come
	src    bytes.Reader
	framer *spdy.Framer
}

func newSPDYReader() (*spdyReader, error) {
	d := &spdyReader{}
	f, err := spdy.NewFramerWithOptions(io.Discard, &d.src, spdy.WithMaxControlFramePayloadSize(maxSPDYFrame),
		spdy.WithMaxHeaderCount(64), spdy.WithMaxHeaderFieldSize(8<<10))
	if err != nil {
		return nil, err
	}
	d.framer = f
	return d, nil
}

// feed reads p, calling frame for each whole control frame and for each piece of a data
// frame's payload (the FIN flag on its last piece only).
func (d *spdyReader) feed(p []byte, frame func(spdy.Frame) error) error {
	for len(p) > 0 || d.left == 0 && d.data.StreamId != 0 {
		if d.data.StreamId != 0 {
			n := min(d.left, len(p))
			d.left -= n
			piece := &spdy.DataFrame{StreamId: d.data.StreamId, Data: p[:n]}
			p = p[n:]
			if d.left == 0 {
				piece.Flags = d.data.Flags
				d.data = spdy.DataFrame{}
			}
			if err := frame(piece); err != nil {
				return err
			}
			continue
		}
		if len(d.buf) < 8 {
			n := min(8-len(d.buf), len(p))
			d.buf = append(d.buf, p[:n]...)
			p = p[n:]
			if len(d.buf) < 8 {
				return nil
			}
			word := binary.BigEndian.Uint32(d.buf)
			length := int(binary.BigEndian.Uint32(d.buf[4:]) & 0xffffff)
			if word&0x80000000 == 0 {
				if word == 0 {
					return fmt.Errorf("%w: a data frame on stream 0", errSPDYProtocol)
				}
				d.data = spdy.DataFrame{StreamId: spdy.StreamId(word), Flags: spdy.DataFlags(d.buf[4])}
				d.left = length
				d.buf = d.buf[:0]
				continue
			}
			if v := (word >> 16) & 0x7fff; v != spdy.Version {
				return fmt.Errorf("%w: version %d", errSPDYProtocol, v)
			}
			if length > maxSPDYFrame {
				return fmt.Errorf("%w: a control frame of %d bytes is over the limit (%d)", errSPDYProtocol, length, maxSPDYFrame)
			}
			d.need = 8 + length
		}
		n := min(d.need-len(d.buf), len(p))
		d.buf = append(d.buf, p[:n]...)
		p = p[n:]
		if len(d.buf) < d.need {
			return nil
		}
		d.src.Reset(d.buf)
		f, err := d.framer.ReadFrame()
		if err != nil {
			return fmt.Errorf("%w: %v", errSPDYProtocol, err)
		}
		if d.src.Len() != 0 {
			return fmt.Errorf("%w: %d bytes left over in a frame", errSPDYProtocol, d.src.Len())
		}
		d.buf = d.buf[:0]
		if cap(d.buf) > 64<<10 {
			d.buf = nil // a large frame's buffer is not kept
		}
		if err := frame(f); err != nil {
			return err
		}
	}
	return nil
}

// execSink hands an exec's or attach's streams to the terminal recorder as channel.k8s.io
// messages: the status (the error stream) whole at its end, resizes one per line.
type execSink struct{ term ghttp.MessageRecorder }

var execChannels = map[string]byte{"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4}

func (e execSink) data(fromClient bool, s *spdyStream, p []byte) {
	ch, ok := execChannels[s.typ]
	if !ok {
		return
	}
	switch ch {
	case 3:
		if len(s.buf)+len(p) <= maxSPDYStatus {
			s.buf = append(s.buf, p...)
		}
	case 4:
		s.buf = append(s.buf, p...)
		for {
			line, rest, ok := bytes.Cut(s.buf, []byte{'\n'})
			if !ok {
				break
			}
			e.deliver(fromClient, ch, line)
			s.buf = append(s.buf[:0], rest...)
		}
		if len(s.buf) > maxSPDYStatus {
			s.buf = nil
		}
	default:
		e.deliver(fromClient, ch, p)
	}
}

func (e execSink) deliver(fromClient bool, ch byte, p []byte) {
	msg := append([]byte{ch}, p...)
	e.term.Message(fromClient, "binary", msg, uint64(len(msg)), true)
}

func (e execSink) closed(s *spdyStream) {
	if len(s.buf) > 0 {
		switch s.typ {
		case "error":
			e.deliver(false, 3, s.buf)
		case "resize":
			e.deliver(true, 4, s.buf)
		}
		s.buf = nil
	}
}

func (e execSink) end() { e.term.Close() }

// portSink records a port-forward's connections as http.ws text frames, one per stream
// at its end: its port, type and byte counts each way (the error stream's text too). What
// the connections carry is not recorded.
type portSink struct {
	record func(frames []schemas.WSFrame, chunk uint32)
	start  time.Time
	frames []schemas.WSFrame
	chunk  uint32
}

func newPortSink(x *ghttp.Exchange) *portSink {
	return &portSink{start: time.Now(), record: func(frames []schemas.WSFrame, chunk uint32) {
		x.Session.Record(&schemas.HttpWs{QueryID: x.QueryID, Chunk: chunk, Frames: frames})
	}}
}

func (p *portSink) data(fromClient bool, s *spdyStream, d []byte) {
	if s.typ == "error" && !fromClient && len(s.errText)+len(d) <= 4<<10 {
		s.errText = append(s.errText, d...)
	}
}

func (p *portSink) closed(s *spdyStream) {
	text := fmt.Sprintf("port %s %s stream: %d bytes from the client, %d from the server", s.port, s.typ, s.fromCli, s.fromSrv)
	if e := strings.TrimSpace(string(s.errText)); e != "" {
		text += ": " + strings.ToValidUTF8(e, "?")
	}
	p.frames = append(p.frames, schemas.WSFrame{TUS: uint64(time.Since(p.start).Microseconds()), From: "server", Op: "text",
		Data: text, Bytes: s.fromCli + s.fromSrv})
	if len(p.frames) >= 64 {
		p.emit()
	}
}

func (p *portSink) emit() {
	if len(p.frames) == 0 {
		return
	}
	p.record(p.frames, p.chunk)
	p.chunk++
	p.frames = nil
}

func (p *portSink) end() { p.emit() }
