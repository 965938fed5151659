package kube

import (
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
	partial [3][]byte // a UTF-8 sequence split across messages, per stream
	// b64: the negotiated subprotocol is (v4.)base64.channel.k8s.io, where every message (the
	// API server does not look at the frame type) is an ASCII stream digit and base64.
	b64 bool
}

func newTermRecorder(x *ghttp.Exchange) *termRecorder {
	return &termRecorder{x: x, start: time.Now(), last: time.Now(), stdin: sha256.New(),
		b64: strings.Contains(strings.ToLower(x.Subprotocol), "base64.channel.k8s.io")}
}

func (r *termRecorder) Message(fromClient bool, op string, data []byte, size uint64, complete bool) {
	if op != "binary" && op != "text" {
		return
	}
	if len(data) == 0 {
		return
	}
	// The API server reads a message by the negotiated subprotocol, whatever its frame type
	// (text or binary): so does the recorder.
	stream := data[0]
	payload := data[1:]
	if r.b64 {
		stream -= '0'
		d, err := base64.StdEncoding.DecodeString(string(payload))
		if err != nil {
			return
		}
		payload = d
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := uint64(time.Since(r.start).Microseconds())
	switch {
	case fromClient && stream == 0:
		if r.x.Kube != nil && r.x.Kube.Tty {
			r.addLocked(t, "i", payload, 0)
		} else {
			r.stdin.Write(payload)
			r.stdinN += uint64(len(payload))
		}
	case fromClient && stream == 4:
		var sz struct{ Width, Height uint16 }
		if json.Unmarshal(payload, &sz) == nil {
			r.addLocked(t, "r", []byte(fmt.Sprintf("%dx%d", sz.Width, sz.Height)), -1)
		}
	case !fromClient && stream == 1:
		r.addLocked(t, "o", payload, 1)
	case !fromClient && stream == 2:
		r.addLocked(t, "e", payload, 2)
	case !fromClient && stream == 3:
		var st struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		if json.Unmarshal(payload, &st) == nil {
			exit := st.Status
			if st.Message != "" {
				exit += ": " + st.Message
			}
			r.x.SetExit(exit)
		}
	}
	if r.size >= chunkBytes || time.Since(r.last) > 200*time.Millisecond {
		r.emitLocked(false)
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
	r.x.Session.Record(ev)
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
