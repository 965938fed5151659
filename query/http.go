package query

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// HTTPSession is the trail of a session on an HTTP resource or a Kubernetes API server,
// arranged for people: who called what, and per request its decision and approval, the
// response's status, the masked body as recorded, WebSocket messages, how it ended, and
// for a `kubectl exec` or attach its terminal frames in play order. Built from a Replay's
// events (HTTPSessionOf); the CLI prints and plays it, and writes asciicast files from it.
type HTTPSession struct {
	SessionHead
	// Protocol is http or kubernetes: the session.start's, else kubernetes when a request
	// carries the API server's request info.
	Protocol string
	Requests []*HTTPRequest // in the order they were made
}

// HTTPRequest is one http.request with what the trail says happened to it.
type HTTPRequest struct {
	Seq     uint64
	Time    time.Time
	Request schemas.HttpRequest
	Verdict
	// Response is the status and headers sent to the client (nil: none recorded).
	Response *schemas.HttpResponse
	// Body is the response body's recorded chunks in order; BodyMasked adds up their
	// masked counts.
	Body       []schemas.HttpBody
	BodyMasked uint64
	// WS are the WebSocket messages after an upgrade, in order; WSMasked and WSDropped add
	// up their chunks' counts.
	WS                  []schemas.WSFrame
	WSMasked, WSDropped uint64
	// Done is how the request ended (nil: not recorded).
	Done     *schemas.HttpDone
	DoneTime time.Time
	// Frames are a Kubernetes exec's or attach's terminal frames (kube.io) in play order;
	// IOChunks how many kube.io events they came from; IOMasked and IODropped add up their
	// counts; StdinSHA256 is the hash of a non-terminal stdin.
	Frames              []schemas.TermFrame
	IOChunks            int
	IOMasked, IODropped uint64
	StdinSHA256         string
}

// IsKube says whether the request went to the Kubernetes API.
func (r *HTTPRequest) IsKube() bool { return r.Request.Kube != nil }

// Text is the request as the evidence reports and OCSF show it (HTTPRequestText).
func (r *HTTPRequest) Text() string { return HTTPRequestText(&r.Request) }

// HTTPRequestText is a request in one line: `GET /orders/7?expand=items`; a Kubernetes
// request as the API server reads it, `get pods -n shop web-1`, `create pods/exec -n shop
// web-1 [sh -c date]`, with the path after it.
func HTTPRequestText(p *schemas.HttpRequest) string {
	target := p.Path
	if p.Query != "" {
		target += "?" + p.Query
	}
	if p.Kube == nil {
		return p.Method + " " + target
	}
	return kubeText(p.Kube) + " (" + p.Method + " " + target + ")"
}

// kubeText is a Kubernetes request as the API server read it: `get pods -n shop web-1`,
// `create pods/exec -n shop web-1 -c app [sh -c date]`.
func kubeText(k *schemas.KubeAttributes) string {
	s := k.Verb
	if k.Resource != "" {
		s += " " + k.Resource
		if k.Subresource != "" {
			s += "/" + k.Subresource
		}
	}
	if k.Namespace != "" {
		s += " -n " + k.Namespace
	}
	if k.Name != "" {
		s += " " + k.Name
	}
	if k.Container != "" {
		s += " -c " + k.Container
	}
	if len(k.Command) > 0 {
		s += " [" + strings.Join(k.Command, " ") + "]"
	}
	if len(k.Ports) > 0 {
		s += " ports " + strings.Join(k.Ports, ",")
	}
	return s
}

// BodyText is the recorded response body: the chunks' text joined, a binary body as
// "(N bytes of binary data)".
func (r *HTTPRequest) BodyText() string {
	var b strings.Builder
	var binary int
	for _, c := range r.Body {
		if c.Binary {
			n, _ := base64.StdEncoding.DecodeString(c.Data)
			binary += len(n)
			continue
		}
		b.WriteString(c.Data)
	}
	if binary > 0 {
		fmt.Fprintf(&b, "(%d bytes of binary data)", binary)
	}
	return b.String()
}

// Terminal is a Kubernetes exec's or attach's recorded terminal: from the request's time,
// its size from the first resize frame (kubectl sends the terminal's size first; 0 when it
// had none).
func (r *HTTPRequest) Terminal() Terminal {
	t := Terminal{Opened: r.Time, Frames: r.Frames}
	for _, f := range r.Frames {
		if f.Code != "r" {
			continue
		}
		c, rows, ok := strings.Cut(f.Data, "x")
		cols, err1 := strconv.ParseUint(c, 10, 32)
		nrows, err2 := strconv.ParseUint(rows, 10, 32)
		if ok && err1 == nil && err2 == nil {
			t.Cols, t.Rows = uint32(cols), uint32(nrows)
		}
		break
	}
	return t
}

// HasOutput says whether the request has terminal output to play (a Kubernetes exec).
func (r *HTTPRequest) HasOutput() bool { return r.Terminal().HasOutput() }

// Describe is a request in a few words: `request 4 (create pods/exec -n shop web-1 [sh])`,
// `request 2 (GET /orders/7)`.
func (r *HTTPRequest) Describe() string {
	what := r.Request.Method + " " + r.Request.Path
	if k := r.Request.Kube; k != nil {
		what = kubeText(k)
	}
	return fmt.Sprintf("request %d (%s)", r.Request.QueryID, what)
}

// IsHTTP says whether a replay is of an HTTP or Kubernetes session: its session.start says
// so, or it holds HTTP or kube.io events.
func IsHTTP(events []schemas.Event) bool {
	for i := range events {
		switch events[i].Type {
		case schemas.TypeSessionStart:
			var p schemas.SessionStart
			if events[i].Decode(&p) == nil && (p.Protocol == "http" || p.Protocol == "kubernetes") {
				return true
			}
		case schemas.TypeHttpRequest, schemas.TypeHttpResponse, schemas.TypeHttpBody, schemas.TypeHttpWs, schemas.TypeHttpDone, schemas.TypeKubeIo:
			return true
		}
	}
	return false
}

// HTTPSessionOf arranges an HTTP or Kubernetes session's events (in sequence order). An
// event it cannot decode is left out, as the replay's other views do.
func HTTPSessionOf(events []schemas.Event) *HTTPSession {
	s := &HTTPSession{}
	requests := map[uint64]*HTTPRequest{}
	orphan := func(qid uint64) *HTTPRequest {
		if r := requests[qid]; r != nil {
			return r
		}
		return &HTTPRequest{} // an event of no recorded request: kept nowhere
	}
	verdict := func(qid uint64) *Verdict { return &orphan(qid).Verdict }
	io := map[uint64][]schemas.KubeIo{}
	ws := map[uint64][]schemas.HttpWs{}
	for i := range events {
		e := &events[i]
		if s.apply(e) || applyVerdict(e, verdict) {
			continue
		}
		switch e.Type {
		case schemas.TypeHttpRequest:
			var p schemas.HttpRequest
			if e.Decode(&p) == nil {
				r := &HTTPRequest{Seq: e.Seq, Time: e.Time, Request: p}
				requests[p.QueryID] = r
				s.Requests = append(s.Requests, r)
			}
		case schemas.TypeHttpResponse:
			var p schemas.HttpResponse
			if e.Decode(&p) == nil {
				orphan(p.QueryID).Response = &p
			}
		case schemas.TypeHttpBody:
			var p schemas.HttpBody
			if e.Decode(&p) == nil {
				r := orphan(p.QueryID)
				r.Body = append(r.Body, p)
				for _, m := range p.Masked {
					r.BodyMasked += m.Count
				}
			}
		case schemas.TypeHttpWs:
			var p schemas.HttpWs
			if e.Decode(&p) == nil {
				ws[p.QueryID] = append(ws[p.QueryID], p)
			}
		case schemas.TypeHttpDone:
			var p schemas.HttpDone
			if e.Decode(&p) == nil {
				r := orphan(p.QueryID)
				r.Done, r.DoneTime = &p, e.Time
			}
		case schemas.TypeKubeIo:
			var p schemas.KubeIo
			if e.Decode(&p) == nil {
				io[p.QueryID] = append(io[p.QueryID], p)
			}
		}
	}
	if s.Start != nil {
		s.Protocol = s.Start.Protocol
	}
	if s.Protocol != "http" && s.Protocol != "kubernetes" {
		s.Protocol = "http"
		for _, r := range s.Requests {
			if r.IsKube() {
				s.Protocol = "kubernetes"
				break
			}
		}
	}
	for _, r := range s.Requests {
		r.Outcome = outcome(&r.Verdict)
		// Chunks are numbered within a request; the trail has them in order already, and a
		// stable sort by number keeps it so.
		slices.SortStableFunc(r.Body, func(a, b schemas.HttpBody) int { return cmp.Compare(a.Chunk, b.Chunk) })
		if cs := ws[r.Request.QueryID]; len(cs) > 0 {
			slices.SortStableFunc(cs, func(a, b schemas.HttpWs) int { return cmp.Compare(a.Chunk, b.Chunk) })
			for _, c := range cs {
				r.WS = append(r.WS, c.Frames...)
				for _, m := range c.Masked {
					r.WSMasked += m.Count
				}
				r.WSDropped += c.Dropped
			}
		}
		if cs := io[r.Request.QueryID]; len(cs) > 0 {
			slices.SortStableFunc(cs, func(a, b schemas.KubeIo) int { return cmp.Compare(a.Chunk, b.Chunk) })
			var frames []schemas.TermFrame
			for _, c := range cs {
				frames = append(frames, c.Frames...)
				for _, m := range c.Masked {
					r.IOMasked += m.Count
				}
				r.IODropped += c.Dropped
				if c.StdinSha256 != "" {
					r.StdinSHA256 = c.StdinSha256
				}
			}
			r.IOChunks = len(cs)
			r.Frames = PlayOrder(frames)
		}
	}
	return s
}

// KubeAsciicastTitle is the title the CLI gives a Kubernetes exec's recording: who, where,
// what ran, when.
func KubeAsciicastTitle(s *HTTPSession, r *HTTPRequest) string {
	who := s.Identity.Name
	if who == "" {
		who = s.Identity.Subject
	}
	return fmt.Sprintf("%s on %s, %s, %s", who, s.Resource, r.Describe(), r.Time.UTC().Format(time.RFC3339))
}
