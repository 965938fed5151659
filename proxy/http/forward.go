package http

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// upstreams keeps one transport per service (URL, CA, client certificate), so that
// connections to it are reused.
type upstreams struct {
	mu sync.Mutex
	m  map[string]*upstream
}

type upstream struct {
	base *url.URL
	rt   *http.Transport
	// rt1 speaks HTTP/1.1 only: upgrades other than WebSocket (SPDY) exist only there, and
	// Go's transport keeps only WebSocket upgrades off HTTP/2 by itself.
	rt1 *http.Transport
	// the client certificate's files' modification times: a rotated pair makes a new
	// transport (looked at once a second at most)
	stamp   string
	checked time.Time
}

func (u *upstreams) init() { u.m = map[string]*upstream{} }

func fileStamp(files ...string) string {
	var b strings.Builder
	for _, f := range files {
		if f == "" {
			continue
		}
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, st.ModTime().UnixNano(), st.Size())
		}
	}
	return b.String()
}

// get is the transport for a backend.
func (u *upstreams) get(be *config.HTTPBackend) (*upstream, error) {
	key := be.URL + "\x00" + be.CAFile + "\x00" + be.ServerName + "\x00" + be.ClientCertFile + "\x00" + be.ClientKeyFile + "\x00" + be.Timeout.String()
	u.mu.Lock()
	defer u.mu.Unlock()
	up := u.m[key]
	if up != nil && time.Since(up.checked) < time.Second {
		return up, nil // the files were looked at less than a second ago
	}
	stamp := fileStamp(be.CAFile, be.ClientCertFile, be.ClientKeyFile)
	if up != nil && up.stamp == stamp {
		up.checked = time.Now()
		return up, nil
	}
	base, err := url.Parse(be.URL)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: be.ServerName}
	if be.CAFile != "" {
		pem, err := os.ReadFile(be.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file: no certificate in it")
		}
		tc.RootCAs = pool
	}
	if be.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(be.ClientCertFile, be.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	rt := &http.Transport{
		Proxy:                 nil, // the gateway calls the service itself, never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: be.Timeout,
		ExpectContinueTimeout: time.Second,
		// The gateway asks for compressed responses and reads them decompressed (masking
		// needs the text); the client gets them uncompressed.
		DisableCompression:     false,
		MaxResponseHeaderBytes: 1 << 20,
	}
	if up != nil {
		up.rt.CloseIdleConnections()
		up.rt1.CloseIdleConnections()
	}
	rt1 := rt.Clone()
	rt1.ForceAttemptHTTP2 = false
	rt1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	rt1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	up = &upstream{base: base, rt: rt, rt1: rt1, stamp: stamp, checked: time.Now()}
	u.m[key] = up
	return up, nil
}

// forward relays an allowed request to the service and its response, masked and recorded,
// to the client.
func (s *Server) forward(ctx context.Context, w http.ResponseWriter, x *exchange, prof Profile, d *schemas.DecisionReply, b *body) {
	up, err := s.upstreams.get(x.Backend)
	if err != nil {
		s.answer(w, x, problem{Type: probUpstream, Status: http.StatusBadGateway, Detail: "the gateway cannot reach " + x.Resource.Name + ": " + err.Error()}, "error")
		return
	}
	bearerTok, user, pass, err := x.Backend.Credential()
	if err != nil {
		s.answer(w, x, problem{Type: probUpstream, Status: http.StatusBadGateway, Detail: "the gateway's credential for " + x.Resource.Name + " cannot be read"}, "error")
		s.log.Error("backend credential", "resource", x.Resource.Name, "err", err)
		return
	}
	masker, err := s.responseMasker(x, prof, d)
	if err != nil {
		s.log.Error("mask spec", "resource", x.Resource.Name, "err", err)
		s.answer(w, x, problem{Type: probUpstream, Status: http.StatusInternalServerError, Detail: "the gateway cannot mask this response, so it is not sent"}, "error")
		return
	}
	if masker != nil && x.Upgrade != "" {
		s.answer(w, x, problem{Type: probDenied, Status: http.StatusForbidden, Detail: "a masked response cannot be relayed over an upgraded connection: the decision masks, so the upgrade is refused"}, "denied")
		return
	}
	if x.Upgrade != "" && x.Upgrade != "websocket" && prof.Upgrade(&x.Exchange) == nil {
		s.answer(w, x, problem{Type: probRequest, Status: http.StatusBadRequest, Detail: "an upgrade to " + x.Upgrade + " cannot be recorded, so it is not relayed: use WebSocket (kubectl 1.30 or later does)"}, "refused")
		return
	}
	x.rec = newBodyRecorder(x, masker)
	var reqBody io.Reader = http.NoBody
	length := int64(0)
	if len(b.head) > 0 || b.rest != nil {
		reqBody = strings.NewReader(string(b.head))
		length = int64(len(b.head))
		if b.rest != nil {
			reqBody = io.MultiReader(reqBody, b.rest)
			length = b.size
		}
	}
	var rt http.RoundTripper = up.rt
	if x.Upgrade != "" && x.Upgrade != "websocket" {
		rt = up.rt1
	}
	rp := &httputil.ReverseProxy{
		Transport: rt,
		// Streaming responses (no length: a watch, a masked body) and server-sent events are
		// flushed at once by the reverse proxy itself; others go out as its buffer fills.
		FlushInterval: 0,
		BufferPool:    bufferPool{},
		ErrorLog:      s.errLog,
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL = &url.URL{Scheme: up.base.Scheme, Host: up.base.Host, Path: joinPath(up.base.Path, x.Path),
				RawPath: joinPath(up.base.EscapedPath(), x.EncodedPath), RawQuery: x.RawQuery}
			out.Host = up.base.Host
			out.RequestURI = ""
			out.Body = io.NopCloser(reqBody)
			out.ContentLength = length
			if length < 0 || (b.rest != nil && b.size < 0) {
				out.ContentLength = -1
			}
			if len(b.head) == 0 && b.rest == nil {
				out.Body = http.NoBody
			}
			h := out.Header
			h.Del(x.Backend.TokenHeader)
			h.Del("Authorization")
			h.Del("Accept-Encoding") // the transport asks for gzip and decompresses
			for k := range h {
				if identityHeader(k) {
					h.Del(k)
				}
			}
			if masker != nil {
				// A part of a masked document is not a masked part: the service is asked for
				// the whole (a Range slice would carry the clear bytes), conditionally or not.
				h.Del("Range")
				h.Del("If-Range")
			}
			if x.Upgrade == "websocket" {
				// No compression extension: the gateway records and masks what it reads.
				h.Del("Sec-Websocket-Extensions")
			}
			pr.SetXForwarded()
			if !x.byHost {
				// The Host of a request routed by path is whatever the client wrote: a service
				// building links from X-Forwarded-Host is not pointed at it.
				h.Del("X-Forwarded-Host")
			}
			switch {
			case bearerTok != "":
				h.Set("Authorization", "Bearer "+bearerTok)
			case user != "":
				h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
			}
			h.Set("X-Gatehouse-Session", x.cs.sess.ID)
			h.Set("X-Gatehouse-Subject", x.Identity.Subject)
			prof.Outgoing(&x.Exchange, out)
		},
		ModifyResponse: func(resp *http.Response) error {
			return s.response(x, prof, masker, resp)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			x.mu.Lock()
			x.from = "gateway"
			x.mu.Unlock()
			if cut := x.cutReason(); cut != "" || errors.Is(context.Cause(ctx), errCut) {
				panic(http.ErrAbortHandler)
			}
			if ctx.Err() != nil {
				x.finishErr = "client_closed"
				return
			}
			x.finishErr = "error"
			s.log.Warn("upstream request failed", "resource", x.Resource.Name, "err", err)
			p := problem{Type: probUpstream, Status: http.StatusBadGateway, Detail: "the service did not answer: " + upstreamError(err), Session: x.cs.sess.ID, Request: x.QueryID}
			if errors.Is(err, errUnmaskable) {
				p = problem{Type: probDenied, Status: http.StatusBadGateway, Detail: err.Error(), Session: x.cs.sess.ID, Request: x.QueryID}
			}
			bb := writeProblem(w, p) // counted by the counting writer
			x.status = p.Status
			x.cs.sess.Record(&schemas.HttpResponse{QueryID: x.QueryID, Status: uint32(p.Status), Headers: responseHeaders(w.Header()), From: "gateway"})
			x.rec.write(bb)
		},
	}
	defer s.done(x)
	rp.ServeHTTP(&countingWriter{ResponseWriter: w, x: x}, x.Request)
}

// upstreamError says what went wrong without the service's internal address.
func upstreamError(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	}
	return "the connection failed"
}

func joinPath(base, p string) string {
	if base == "" || base == "/" {
		return p
	}
	return strings.TrimSuffix(base, "/") + p
}

// countingWriter counts the body bytes sent to the client, and bounds each write in time: a
// client that stops reading is cut off after the body timeout rather than holding its
// connection, its upstream request and its buffers.
type countingWriter struct {
	http.ResponseWriter
	x  *exchange
	rc *http.ResponseController
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.rc == nil {
		c.rc = http.NewResponseController(c.ResponseWriter)
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.x.s.cfg.BodyTimeout))
	n, err := c.ResponseWriter.Write(p)
	c.x.out += uint64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// bufferPool lends the reverse proxy its copy buffers.
type bufferPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(copyBufs.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { copyBufs.Put(&b) }
