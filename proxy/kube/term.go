package kube

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/schemas"
)

// An exec or attach over WebSocket speaks the channel.k8s.io protocols: each binary
// message starts with its stream's number (0 stdin, 1 stdout, 2 stderr, 3 the API
// server's status at the end, 4 terminal resizes; 255 in v5 closes a stream), the
// base64.channel.k8s.io variant the same as text, the number an ASCII digit and the data
// base64. The recorder turns them into timed terminal frames (kube.io), like an SSH
// session's: output, error output, keystrokes on a terminal (a stdin without a terminal is
// recorded by its SHA-256 only: it may carry a secret), resizes; the status is the exec's
// exit.

// maxRecorded bounds what one exec records of its streams.
const maxRecorded = 64 << 20

const chunkBytes = 16 << 10

type termRecorder struct {
	x       *ghttp.Exchange
	mu      sync.Mutex
	start   time.Time
	frames  []schemas.TermFrame
	size    int
	chunk   uint32
	total   int
	dropped uint64
	last    time.Time
	stdin   hash.Hash
	stdinN  uint64
	partial [3][]byte     // a UTF-8 sequence split across messages, per stream
	pieces  [2]pieceState // the message each direction carries: from the server, from the client
	record  func(*schemas.KubeIo)
	// b64: the negotiated subprotocol is (v4.)base64.channel.k8s.io, where every message (the
	// API server does not look at the frame type) is an ASCII stream digit and base64.
	b64 bool
}

func newTermRecorder(x *ghttp.Exchange) *termRecorder {
	return &termRecorder{x: x, start: time.Now(), last: time.Now(), stdin: sha256.New(),
		b64:    strings.Contains(strings.ToLower(x.Subprotocol), "base64.channel.k8s.io"),
		record: func(ev *schemas.KubeIo) { x.Session.Record(ev) }}
}

func (r *termRecorder) Message(fromClient bool, op string, data []byte, size uint64, complete bool) {
	if (op != "binary" && op != "text") || len(data) == 0 {
		return
	}
	r.Piece(fromClient, op, data, true, true)
}

// pieceState is what the recorder keeps of the message a direction is carrying.
type pieceState struct {
	stream byte
	b64    []byte // base64 not decoded yet (less than 4 characters)
	status []byte // the status stream's message, read whole (bounded)
}

// Piece takes a WebSocket message's payload in pieces as they pass, whatever the message's
// length (proxy/http.PieceRecorder): nothing the API server reads goes unrecorded. The
// API server reads a message by the negotiated subprotocol, whatever its frame type (text
// or binary): so does the recorder.
func (r *termRecorder) Piece(fromClient bool, op string, p []byte, first, last bool) {
	if op != "binary" && op != "text" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &r.pieces[0]
	if fromClient {
		st = &r.pieces[1]
	}
	if first {
		if len(p) == 0 {
			st.stream = 0xff
			return
		}
		st.stream, p = p[0], p[1:]
		if r.b64 {
			st.stream -= '0'
		}
		st.b64, st.status = st.b64[:0], st.status[:0]
	}
	if st.stream == 0xff {
		return
	}
	if r.b64 {
		st.b64 = append(st.b64, p...)
		n := len(st.b64) / 4 * 4
		if last {
			n = len(st.b64)
		}
		d, err := base64.StdEncoding.DecodeString(string(st.b64[:n]))
		st.b64 = append(st.b64[:0], st.b64[n:]...)
		if err != nil {
			return // the API server refuses it too
		}
		p = d
	}
	r.streamLocked(fromClient, st, p, last)
	if r.size >= chunkBytes || time.Since(r.last) > 200*time.Millisecond {
		r.emitLocked(false)
	}
}

// maxStatus bounds the status message read whole.
const maxStatus = 64 << 10

func (r *termRecorder) streamLocked(fromClient bool, st *pieceState, payload []byte, last bool) {
	t := uint64(time.Since(r.start).Microseconds())
	switch {
	case fromClient && st.stream == 0:
		if r.x.Kube != nil && r.x.Kube.Tty {
			r.addLocked(t, "i", payload, 0)
		} else {
			r.stdin.Write(payload)
			r.stdinN += uint64(len(payload))
		}
	case fromClient && st.stream == 4:
		if len(st.status)+len(payload) <= maxStatus {
			st.status = append(st.status, payload...)
		}
		if last {
			for _, line := range bytes.Split(st.status, []byte{'\n'}) {
				var sz struct{ Width, Height uint16 }
				if json.Unmarshal(line, &sz) == nil {
					r.addLocked(t, "r", []byte(fmt.Sprintf("%dx%d", sz.Width, sz.Height)), -1)
				}
			}
		}
	case !fromClient && st.stream == 1:
		r.addLocked(t, "o", payload, 1)
	case !fromClient && st.stream == 2:
		r.addLocked(t, "e", payload, 2)
	case !fromClient && st.stream == 3:
		if len(st.status)+len(payload) <= maxStatus {
			st.status = append(st.status, payload...)
		}
		if last {
			var s struct {
				Status  string `json:"status"`
				Message string `json:"message"`
			}
			if json.Unmarshal(st.status, &s) == nil {
				exit := s.Status
				if s.Message != "" {
					exit += ": " + s.Message
				}
				r.x.SetExit(exit)
			}
		}
	}
}

// addLocked adds a frame; p is kept whole as UTF-8 across messages of a stream (i >= 0).
func (r *termRecorder) addLocked(t uint64, code string, p []byte, i int) {
	if i >= 0 && i < 3 {
		p = append(r.partial[i], p...)
		cut := len(p)
		for k := len(p) - 1; k >= 0 && k >= len(p)-3; k-- {
			if utf8.RuneStart(p[k]) {
				if !utf8.FullRune(p[k:]) {
					cut = k
				}
				break
			}
		}
		r.partial[i] = append([]byte(nil), p[cut:]...)
		p = p[:cut]
	}
	if len(p) == 0 {
		return
	}
	if r.total+len(p) > maxRecorded {
		r.dropped += uint64(len(p))
		return
	}
	r.total += len(p)
	r.size += len(p)
	r.frames = append(r.frames, schemas.TermFrame{TUS: t, Code: code, Data: string(p)})
}

func (r *termRecorder) emitLocked(last bool) {
	r.last = time.Now()
	ev := &schemas.KubeIo{QueryID: r.x.QueryID, Chunk: r.chunk, Frames: r.frames, Dropped: r.dropped}
	if last && r.stdinN > 0 {
		ev.StdinSha256 = hex.EncodeToString(r.stdin.Sum(nil))
	}
	if len(ev.Frames) == 0 && ev.Dropped == 0 && ev.StdinSha256 == "" {
		return
	}
	if ev.Frames == nil {
		ev.Frames = []schemas.TermFrame{}
	}
	r.record(ev)
	r.chunk++
	r.frames, r.size, r.dropped = nil, 0, 0
}

func (r *termRecorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := uint64(time.Since(r.start).Microseconds())
	for i, code := range []string{"", "o", "e"} {
		if len(r.partial[i]) > 0 && code != "" {
			r.frames = append(r.frames, schemas.TermFrame{TUS: t, Code: code, Data: string(r.partial[i])})
		}
	}
	r.emitLocked(true)
}
