package http

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/proxy/mask"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// errUnmaskable is a response the gateway must mask but cannot read: it is not sent.
var errUnmaskable = errors.New("the response cannot be masked")

// respMask is what a decision masks in a response: JSON fields by path, and the content
// detectors' finds everywhere else.
type respMask struct {
	m      *mask.Masker // detectors (nil: none)
	fields []schemas.MaskField
}

func (s *Server) responseMasker(x *exchange, prof Profile, d *schemas.DecisionReply) (*respMask, error) {
	var rm respMask
	if d.Effect == schemas.EffectMask && d.Mask != nil {
		m, err := s.masks.Get(d.Mask)
		if err != nil {
			return nil, err
		}
		if m.HasDetectors() {
			rm.m = m
		}
		rm.fields = append(rm.fields, d.Mask.Fields...)
	}
	rm.fields = append(rm.fields, prof.Masks(&x.Exchange, d)...)
	if rm.m == nil && len(rm.fields) == 0 {
		return nil, nil
	}
	if rm.m == nil {
		// hmac fields need the key: a masker without detectors.
		m, err := s.masks.Get(&schemas.MaskSpec{})
		if err != nil {
			return nil, err
		}
		rm.m = m
	}
	return &rm, nil
}

// response takes the service's response headers: recorded, and the body wrapped to be
// masked and recorded as it streams.
func (s *Server) response(x *exchange, prof Profile, rm *respMask, resp *http.Response) error {
	x.mu.Lock()
	x.status, x.from = resp.StatusCode, "upstream"
	x.mu.Unlock()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			return errors.New("the service switched protocols without a connection to relay")
		}
		x.Subprotocol = resp.Header.Get("Sec-Websocket-Protocol")
		rec := prof.Upgrade(&x.Exchange)
		if rec == nil && x.Upgrade == "websocket" {
			rec = newWSRecorder(x, rm)
		}
		if rec == nil {
			return errors.New("the upgraded connection cannot be recorded")
		}
		x.cs.sess.Record(&schemas.HttpResponse{QueryID: x.QueryID, Status: uint32(resp.StatusCode), Headers: responseHeaders(resp.Header), From: "upstream"})
		x.tap = newUpgradeTap(rwc, rec, x.Upgrade == "websocket")
		resp.Body = x.tap
		return nil
	}
	if rm != nil {
		// What describes the service's representation does not describe the masked one,
		// a HEAD's answer included.
		resp.Header.Del("Content-Md5")
		resp.Header.Del("Etag")
		resp.Header.Del("Accept-Ranges")
		if resp.StatusCode == http.StatusPartialContent || resp.Header.Get("Content-Range") != "" {
			return errUnmaskable // asked for the whole; a part is not sent
		}
		if x.Request.Method == http.MethodHead {
			resp.Header.Del("Content-Length")
		}
	}
	if rm != nil && resp.Body != http.NoBody && resp.ContentLength != 0 {
		if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			return errUnmaskable
		}
		ct := resp.Header.Get("Content-Type")
		if len(rm.fields) > 0 && !isJSON(ct) {
			return errUnmaskable // an error page too: services echo records in them
		}
		if !scannable(ct) {
			return errUnmaskable // the detectors read text, in UTF-8
		}
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
	}
	x.cs.sess.Record(&schemas.HttpResponse{QueryID: x.QueryID, Status: uint32(resp.StatusCode), Headers: responseHeaders(resp.Header), From: "upstream"})
	resp.Body = newFilter(resp.Body, rm, resp.Header.Get("Content-Type"), x.rec)
	return nil
}

// scannable reports whether the detectors can read a body of this type: text in UTF-8 (or
// ASCII). A gzip file, an image, a PDF or UTF-16 text would carry what they look for
// unseen.
func scannable(ct string) bool {
	mt := mediaType(ct)
	if _, params, err := mime.ParseMediaType(ct); err == nil {
		if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "utf8" && cs != "us-ascii" {
			return false
		}
	}
	switch {
	case isJSON(ct), strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/yaml",
		"application/x-yaml", "application/csv", "application/graphql-response+json":
		return true
	}
	return false
}

func isJSON(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "application/x-ndjson" || mt == "application/jsonl"
}

// done records the end of a forwarded request.
func (s *Server) done(x *exchange) {
	x.mu.Lock()
	if x.done {
		x.mu.Unlock()
		return
	}
	x.done = true
	status := "ok"
	switch {
	case x.cutBy != "":
		status = x.cutBy
		if status != "shutdown" {
			status = "revoked"
		}
	case x.finishErr != "":
		status = x.finishErr
	case x.Request.Context().Err() != nil:
		status = "client_closed"
	}
	tap := x.tap
	x.mu.Unlock()
	if tap != nil {
		// The upgrade's last recording goes before its end (a copy goroutine of the reverse
		// proxy may still be finishing: what it reads from now on is not recorded).
		tap.closeRecorder()
	}
	x.mu.Lock()
	code, exit := x.status, x.exit
	x.mu.Unlock()
	masked, recorded := x.rec.close()
	if status == "ok" && x.rec.failed != "" {
		status = "error"
	}
	x.cs.sess.Record(&schemas.HttpDone{QueryID: x.QueryID, Status: status, Code: uint32(code), Error: x.rec.failed,
		BytesOut: x.out, BytesRecorded: recorded, Masked: masked, Exit: exit,
		DurationUS: uint64(time.Since(x.start).Microseconds())})
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = x.cs.sess.Durable(fctx)
	cancel()
}

// bodyRecorder records what the client got of a response body, in bounded chunks, up to
// the resource's limit.
type bodyRecorder struct {
	x        *exchange
	mu       sync.Mutex
	limit    int64
	chunk    int
	buf      []byte
	n        uint32
	recorded uint64
	masked   uint64
	counts   map[string]*schemas.MaskedCount
	last     time.Time
	failed   string
}

const bodyChunkBytes = 16 << 10

func newBodyRecorder(x *exchange, _ *respMask) *bodyRecorder {
	return &bodyRecorder{x: x, limit: x.Backend.RecordBodyBytes, chunk: bodyChunkBytes, last: time.Now()}
}

// write records p (masked already).
func (r *bodyRecorder) write(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	room := r.limit - int64(r.recorded) - int64(len(r.buf))
	if room <= 0 {
		return
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	r.buf = append(r.buf, p...)
	if len(r.buf) >= r.chunk || time.Since(r.last) > 200*time.Millisecond {
		r.emitLocked()
	}
}

// count adds masked values.
func (r *bodyRecorder) count(by, method string, n int) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.masked += uint64(n)
	if r.counts == nil {
		r.counts = map[string]*schemas.MaskedCount{}
	}
	c := r.counts[by+"\x00"+method]
	if c == nil {
		c = &schemas.MaskedCount{Name: by, By: by, Method: method}
		r.counts[by+"\x00"+method] = c
	}
	c.Count += uint64(n)
}

func (r *bodyRecorder) emitLocked() {
	r.last = time.Now()
	if len(r.buf) == 0 && len(r.counts) == 0 {
		return
	}
	ev := &schemas.HttpBody{QueryID: r.x.QueryID, Chunk: r.n}
	ev.Data, ev.Binary = textOf(r.buf)
	for _, c := range r.counts {
		ev.Masked = append(ev.Masked, *c)
	}
	r.counts = nil
	r.n++
	r.recorded += uint64(len(r.buf))
	r.buf = r.buf[:0]
	r.x.cs.sess.Record(ev)
}

func (r *bodyRecorder) close() (masked, recorded uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emitLocked()
	return r.masked, r.recorded
}

// textOf is body bytes as event text: UTF-8 as is, anything else base64.
func textOf(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	// A chunk may end inside a character: cut back to its start before deciding.
	if i := lastRuneStart(b); i > 0 && utf8.Valid(b[:i]) && !utf8.FullRune(b[i:]) {
		return string(b[:i]), false
	}
	return base64.StdEncoding.EncodeToString(b), true
}

func lastRuneStart(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-4; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return -1
}

// recordText is a request body as event text, with the request masker's finds masked.
func recordText(b []byte, m *mask.Masker) string {
	s, bin := textOf(b)
	if bin || m == nil {
		return s
	}
	out, _ := m.Detect([]byte(s))
	return string(out)
}

var (
	reqMaskOnce sync.Once
	reqMask     *mask.Masker
)

// requestMasker masks what is recorded of request bodies: card numbers, SSNs and IBANs
// are never written to the trail in clear, whatever the policy.
func (s *Server) requestMasker() *mask.Masker {
	reqMaskOnce.Do(func() {
		reqMask, _ = mask.New(&schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "card", Method: "redact"}, {Name: "ssn", Method: "redact"}, {Name: "iban", Method: "redact"}}}, nil)
	})
	return reqMask
}

// authFailed records a refused token as auth.failed (a session of one event), at most
// authEventsPerSecond a second (a flood of bad tokens is counted, not recorded each).
func (s *Server) authFailed(r *http.Request, res *config.Resource, who *identity.Identity, check, msg string) {
	s.log.Info("authentication refused", "client", r.RemoteAddr, "resource", res.Name, "check", check, "reason", msg)
	if !authEvents.allow() {
		return
	}
	id := &identity.Identity{}
	if who != nil {
		id = who
	}
	sess := session.New(id, res, s.pub, s.decider, s.cfg.Limits)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = sess.Emit(ctx, &schemas.AuthFailed{Protocol: res.Type, ClientAddr: r.RemoteAddr, Database: res.Name, Check: check, Message: msg})
}

const authEventsPerSecond = 50

type rateLimit struct {
	mu    sync.Mutex
	sec   int64
	count int
}

var authEvents rateLimit

// peek reports whether allow would allow now, without counting.
func (l *rateLimit) peek() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sec != time.Now().Unix() || l.count < authEventsPerSecond
}

func (l *rateLimit) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().Unix()
	if now != l.sec {
		l.sec, l.count = now, 0
	}
	l.count++
	return l.count <= authEventsPerSecond
}

// fail records why a response was cut.
func (r *bodyRecorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == "" {
		r.failed = err.Error()
	}
}
