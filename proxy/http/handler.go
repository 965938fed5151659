package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Exchange is one request as the proxy and its profile see it.
type Exchange struct {
	Resource *config.Resource
	Backend  *config.HTTPBackend
	Identity *identity.Identity
	// Request is the client's request; Path is its normalised path below the resource's
	// prefix (decided and forwarded), EncodedPath the same encoded, Query its parameters.
	Request     *http.Request
	Path        string
	EncodedPath string
	Query       url.Values
	RawQuery    string
	// HTTP is the decision's http part; Kube, set by a profile, its kube part, and Attrs
	// what the http.request event records of it.
	HTTP  *schemas.HTTPRequest
	Kube  *schemas.KubeRequest
	Attrs *schemas.KubeAttributes
	// Session is the caller's session (for a profile that records events of its own).
	Session *session.Session
	// QueryID is the request's number in the session, once recorded.
	QueryID uint64
	// Upgrade is the protocol the client asks to upgrade to (websocket, SPDY/3.1), or "";
	// Subprotocol, once the service switched, the WebSocket subprotocol it chose.
	Upgrade     string
	Subprotocol string

	owner *exchange
}

// exchange is the proxy's state of a request.
type exchange struct {
	Exchange
	s      *Server
	cs     *connSession
	prof   Profile
	byHost bool // routed by its Host (one of the resource's hosts), not by path
	start  time.Time
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	cutBy  string // revoked, shutdown: why the request was cut
	status int
	from   string
	out    uint64 // body bytes sent to the client
	rec    *bodyRecorder
	done   bool
	// finishErr is how a request that did not end ok ended (error, client_closed); exit
	// what a profile read of a stream's end (a Kubernetes exec's status).
	finishErr string
	exit      string
	in        uint64      // request body bytes forwarded
	tap       *upgradeTap // an upgraded connection's
}

// SetExit records how a stream's program ended (a profile's recorder calls it).
func (x *Exchange) SetExit(s string) {
	x.owner.mu.Lock()
	x.owner.exit = s
	x.owner.mu.Unlock()
}

// errCut is the cause of a request cut by the gateway (revocation, shutdown).
var errCut = errors.New("request cut by the gateway")

// cut ends a request in flight: its upstream request is cancelled, its response (a watch,
// a WebSocket) cut off.
func (x *exchange) cut(cause, msg string) {
	x.mu.Lock()
	if x.cutBy == "" {
		x.cutBy = cause
	}
	x.mu.Unlock()
	x.cancel(fmt.Errorf("%w: %s", errCut, msg))
}

func (x *exchange) cutReason() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cutBy
}

// ServeHTTP serves one request: route, normalise, authenticate, decide, then forward,
// hold or refuse.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	if cc == nil {
		writeProblem(w, problem{Type: probRequest, Status: http.StatusInternalServerError, Detail: "no connection state"})
		return
	}
	rawPath, rawQuery := splitTarget(r)
	decoded, _, err := NormalizePath(rawPath)
	if err != nil {
		s.refuse(w, r, nil, http.StatusBadRequest, err.Error())
		return
	}
	res, be, prof, rest, byHost, ok := s.route(r, decoded)
	if !ok {
		s.refuse(w, r, nil, http.StatusNotFound, "no resource on this gateway serves "+hostOf(r)+decoded)
		return
	}
	typ := res.Type
	query, canonQuery, err := NormalizeQuery(rawQuery)
	if err != nil {
		s.refuse(w, r, res, http.StatusBadRequest, err.Error())
		return
	}
	if res.RequireTLS && r.TLS == nil {
		s.refuse(w, r, res, http.StatusForbidden, "resource "+res.Name+" requires TLS")
		return
	}
	token, terr := bearer(r, be.TokenHeader)
	if terr != "" {
		s.refuse(w, r, res, http.StatusBadRequest, terr)
		return
	}
	// A token this connection's session already verified is not verified again: the
	// live-session registry ends the session (and refuses the token from then on) when it
	// expires or is revoked.
	cs, dead := cc.known(token, res)
	if dead != "" {
		s.requests.WithLabelValues(typ, "refused").Inc()
		writeProblem(w, problem{Type: probAuth, Status: http.StatusForbidden, Detail: dead})
		return
	}
	if cs == nil {
		id, err := s.auth.Authenticate(r.Context(), token)
		if err != nil {
			var ae *session.AuthError
			status := http.StatusUnauthorized
			check, msg := "token", err.Error()
			if errors.As(err, &ae) {
				check, msg = ae.Check, ae.Msg
				if ae.Class == "revoked" {
					status = http.StatusForbidden
				}
			}
			s.authFailed(r, res, id, check, msg)
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token"`)
			}
			s.requests.WithLabelValues(typ, "refused").Inc()
			writeProblem(w, problem{Type: probAuth, Status: status, Detail: msg})
			return
		}
		cs, err = cc.session(r.Context(), token, id, res, func(sess *session.Session) error {
			return sess.Start(r.Context(), &schemas.SessionStart{Protocol: typ, ClientAddr: r.RemoteAddr, ClientUser: id.Subject,
				Database: res.Name, ApplicationName: truncate(r.UserAgent(), 200), AuthMethod: "token", TLS: r.TLS != nil,
				Labels: labelList(res.Labels)})
		})
		if err != nil {
			s.requests.WithLabelValues(typ, "refused").Inc()
			writeProblem(w, problem{Type: probAudit, Status: http.StatusServiceUnavailable, Detail: "session refused: " + err.Error()})
			return
		}
	}
	id := cs.sess.Identity
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	x := &exchange{s: s, cs: cs, start: start, cancel: cancel, prof: prof, byHost: byHost}
	x.owner = x
	x.Resource, x.Backend, x.Identity, x.Request, x.Session = res, be, id, r.WithContext(ctx), cs.sess
	x.Path = rest
	x.EncodedPath = encodePath(rest)
	x.Query, x.RawQuery = query, canonQuery
	cs.begin(x)
	defer func() {
		cs.finish(x, x.in, x.out)
		cc.upgradeEnded()
	}()
	s.serve(ctx, w, x, prof, rawPath)
}

// serve decides and answers one authenticated request.
func (s *Server) serve(ctx context.Context, w http.ResponseWriter, x *exchange, prof Profile, rawPath string) {
	r := x.Request
	typ := x.Resource.Type
	// The body: one meaning too. A compressed body is refused (the service would read what
	// the policy could not); a JSON body up to the limit is parsed for the rules.
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		s.early(w, x, http.StatusUnsupportedMediaType, "a request body with Content-Encoding "+ce+" is refused: the gateway decides on what the service will read")
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.early(w, x, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over the limit (%d)", r.ContentLength, s.cfg.MaxBodyBytes))
		return
	}
	if msg := methodRefusal(r, x.Query); msg != "" {
		s.early(w, x, http.StatusBadRequest, msg)
		return
	}
	up, refusal := upgradeOf(r)
	if refusal != "" {
		s.early(w, x, http.StatusBadRequest, refusal)
		return
	}
	if up != "" && up != "websocket" && !prof.Upgrades(up) {
		s.early(w, x, http.StatusBadRequest, "upgrade to "+up+" is refused: only WebSocket upgrades are relayed")
		return
	}
	x.Upgrade = up
	body, err := readBody(w, r, s.cfg, x.Backend)
	if err != nil {
		status := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			status = http.StatusRequestEntityTooLarge
		}
		s.early(w, x, status, err.Error())
		return
	}
	x.HTTP = &schemas.HTTPRequest{Method: r.Method, Host: hostOf(r), Path: x.Path, Query: x.Query, Headers: decisionHeaders(r.Header, x.Backend.TokenHeader),
		ContentType: mediaType(r.Header.Get("Content-Type")), BodyBytes: body.size, Websocket: up == "websocket"}
	if body.parsed {
		x.HTTP.Body = body.json
	} else if body.jsonErr != "" {
		x.HTTP.BodyUnread, x.HTTP.BodyError = true, body.jsonErr
	}
	if body.size > 0 {
		x.in = uint64(body.size)
	}
	if route, params := matchRoute(x.Backend, x.Path); route != "" {
		x.HTTP.Route, x.HTTP.Params = route, params
	}
	if status, msg := prof.Prepare(&x.Exchange); status != 0 {
		s.early(w, x, status, msg)
		return
	}
	q := x.cs.sess.OnRequest(ctx, func(id uint64) schemas.Payload {
		return requestEvent(id, x, rawPath, body)
	}, func(req *schemas.DecisionRequest) {
		req.HTTP, req.Kube = x.HTTP, x.Kube
	})
	x.QueryID = q.ID
	d := q.Decision
	switch {
	case d.Effect == schemas.EffectRequireApproval:
		s.requests.WithLabelValues(typ, "held").Inc()
		if body.rest != nil {
			// Approvers approve what runs: a body the gateway has not read whole cannot be shown
			// nor tied to the approval.
			s.answer(w, x, problem{Type: probApproval, Status: http.StatusRequestEntityTooLarge, Rule: d.Rule,
				Detail: fmt.Sprintf("this request needs an approval, and its body is larger than the %d bytes an approval can cover", x.Backend.DecideBodyBytes)}, "denied")
			return
		}
		// The hold lives as long as the gateway (its context); the request's end cancels it,
		// with its reason.
		out := x.cs.sess.HoldFor(s.lifetime(), s.approvals, session.Hold{Query: q, Statement: approvalText(x, body), Hash: requestHash(x, body),
			Notify: func(string, string) {}, Cancelled: cancelled(ctx)})
		if !out.Approved {
			status, typ := http.StatusForbidden, probApproval
			if out.End == "requested" || out.End == "pending" {
				status = http.StatusAccepted
			}
			s.answer(w, x, problem{Type: typ, Status: status, Detail: out.Message, ApprovalID: out.ApprovalID, Rule: d.Rule}, "denied")
			return
		}
	case !d.Allowed():
		s.requests.WithLabelValues(typ, "denied").Inc()
		s.answer(w, x, problem{Type: probDenied, Status: http.StatusForbidden, Detail: d.Reason, Rule: d.Rule}, "denied")
		return
	}
	s.requests.WithLabelValues(typ, "forwarded").Inc()
	s.forward(ctx, w, x, prof, &d, body)
}

// answer sends the gateway's own answer to a decided request and records it.
func (s *Server) answer(w http.ResponseWriter, x *exchange, p problem, status string) {
	p.Session, p.Request = x.cs.sess.ID, x.QueryID
	var b []byte
	if rf, ok := x.prof.(Refuser); ok {
		ct, body := rf.Refusal(p.Status, p.Detail)
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(p.Status)
		_, _ = w.Write(body)
		b = body
	} else {
		b = writeProblem(w, p)
	}
	x.cs.sess.Record(&schemas.HttpResponse{QueryID: x.QueryID, Status: uint32(p.Status), Headers: responseHeaders(w.Header()), From: "gateway"})
	x.cs.sess.Record(&schemas.HttpBody{QueryID: x.QueryID, Data: string(b)})
	x.cs.sess.Record(&schemas.HttpDone{QueryID: x.QueryID, Status: status, Code: uint32(p.Status), Error: p.Detail,
		BytesOut: uint64(len(b)), BytesRecorded: uint64(len(b)), DurationUS: uint64(time.Since(x.start).Microseconds())})
	_ = x.cs.sess.Durable(context.WithoutCancel(x.Request.Context()))
}

// early refuses a request of a session before any decision: it is recorded as a request
// refused by the gateway.
func (s *Server) early(w http.ResponseWriter, x *exchange, status int, msg string) {
	s.requests.WithLabelValues(x.Resource.Type, "refused").Inc()
	q := x.cs.sess.RefuseRequest(func(id uint64) schemas.Payload {
		return &schemas.HttpRequest{QueryID: id, Method: x.Request.Method, Host: hostOf(x.Request), Path: x.Path, Query: x.RawQuery}
	}, "request", msg)
	x.QueryID = q.ID
	s.answer(w, x, problem{Type: probRequest, Status: status, Detail: msg}, "refused")
}

// refuse answers a request no session takes (no resource, a malformed path): it is
// recorded as auth.failed (check request) on its resource (or _unknown), with the caller's
// identity when it sent a token that verifies — probing leaves a trace.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, res *config.Resource, status int, msg string) {
	typ := "none"
	if res != nil {
		typ = res.Type
	}
	s.requests.WithLabelValues(typ, "refused").Inc()
	t := probRequest
	if status == http.StatusNotFound {
		t = probRoute
	}
	if res == nil {
		res = &config.Resource{Name: "_unknown", Type: "http", Audit: "buffered"}
	}
	var id *identity.Identity
	if authEvents.peek() {
		header := "Authorization"
		if be := backendOf(res); be != nil && be.TokenHeader != "" {
			header = be.TokenHeader
		}
		if tok, _ := bearer(r, header); tok != "" {
			id, _ = s.auth.Authenticate(r.Context(), tok)
		}
	}
	s.authFailed(r, res, id, "request", msg+" ("+r.Method+" "+truncate(r.RequestURI, 1024)+")")
	writeProblem(w, problem{Type: t, Status: status, Detail: msg})
}

// cancelled turns the request's end into a hold's cancellation, with its reason: the
// gateway cut it (revoked, shutdown) or the client went.
func cancelled(ctx context.Context) <-chan string {
	ch := make(chan string, 1)
	go func() {
		<-ctx.Done()
		why := "client_disconnected"
		if errors.Is(context.Cause(ctx), errCut) {
			why = "revoked"
		}
		ch <- why
	}()
	return ch
}

// splitTarget returns the raw path and query of the request target, as the client sent
// them (before any decoding).
func splitTarget(r *http.Request) (string, string) {
	t := r.RequestURI
	if strings.HasPrefix(t, "/") {
		p, q, _ := strings.Cut(t, "?")
		return p, q
	}
	// Absolute form (or *): the URL Go parsed, in its original encoding.
	return r.URL.EscapedPath(), r.URL.RawQuery
}

// hostOf is the host the client addressed, without port, lower case.
func hostOf(r *http.Request) string {
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// route finds the resource of a request: by host name first, then by the longest path
// prefix; rest is the path below the prefix.
func (s *Server) route(r *http.Request, path string) (res *config.Resource, be *config.HTTPBackend, prof Profile, rest string, byHost, ok bool) {
	t := s.table()
	host := hostOf(r)
	if rs := t.hosts[host]; len(rs) > 0 {
		for _, res := range rs {
			be := t.backends[res]
			if be.PathPrefix == "" || underPrefix(path, be.PathPrefix) {
				return res, be, s.profiles[res.Type], strip(path, be.PathPrefix), true, true
			}
		}
	}
	for _, res := range t.prefixes { // longest first
		be := t.backends[res]
		if underPrefix(path, be.PathPrefix) {
			return res, be, s.profiles[res.Type], strip(path, be.PathPrefix), false, true
		}
	}
	return nil, nil, nil, "", false, false
}

// routeTable is the resources the proxy serves, by host and by path prefix, made again
// when the resources change.
type routeTable struct {
	of       map[string]*config.Resource
	backends map[*config.Resource]*config.HTTPBackend // with defaults filled in
	hosts    map[string][]*config.Resource
	prefixes []*config.Resource // resources routed by prefix alone, longest prefix first
}

func (s *Server) table() *routeTable {
	all := s.res.All()
	if t := s.routes.Load(); t != nil && sameMap(t.of, all) {
		return t
	}
	t := &routeTable{of: all, hosts: map[string][]*config.Resource{}, backends: map[*config.Resource]*config.HTTPBackend{}}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		res := all[n]
		be := backendOf(res)
		if be == nil || s.profiles[res.Type] == nil {
			continue
		}
		dbe := be.Defaulted()
		if dbe.OpenAPIFile != "" {
			paths, err := openAPIPaths(dbe.OpenAPIFile)
			if err != nil {
				s.log.Error("resource's OpenAPI document not read: its routes are the configured ones only", "resource", res.Name, "err", err)
			}
			dbe.Routes = append(append([]string(nil), dbe.Routes...), paths...)
		}
		dbe.Routes = orderRoutes(dbe.Routes)
		t.backends[res] = dbe
		for _, h := range be.Hosts {
			h = strings.ToLower(h)
			t.hosts[h] = append(t.hosts[h], res)
		}
		if len(be.Hosts) == 0 && be.PathPrefix != "" {
			t.prefixes = append(t.prefixes, res)
		}
	}
	for _, rs := range t.hosts { // a host with prefixes: longest prefix first
		sort.SliceStable(rs, func(i, j int) bool { return len(backendOf(rs[i]).PathPrefix) > len(backendOf(rs[j]).PathPrefix) })
	}
	sort.SliceStable(t.prefixes, func(i, j int) bool {
		return len(backendOf(t.prefixes[i]).PathPrefix) > len(backendOf(t.prefixes[j]).PathPrefix)
	})
	s.routes.Store(t)
	return t
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap(a, b map[string]*config.Resource) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func backendOf(res *config.Resource) *config.HTTPBackend {
	switch res.Type {
	case "http":
		return res.HTTP
	case "kubernetes":
		return res.Kubernetes
	}
	return nil
}

func underPrefix(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func strip(path, prefix string) string {
	rest := strings.TrimPrefix(path, prefix)
	if rest == "" {
		return "/"
	}
	return rest
}

// bearer takes the caller's token from the resource's token header.
func bearer(r *http.Request, header string) (string, string) {
	vals := r.Header.Values(header)
	if len(vals) > 1 {
		return "", "more than one " + header + " header"
	}
	if len(vals) == 0 {
		return "", ""
	}
	v := strings.TrimSpace(vals[0])
	if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
		return strings.TrimSpace(tok), ""
	}
	if strings.EqualFold(header, "authorization") {
		return "", "the Authorization header must carry a Bearer token"
	}
	return v, ""
}

// overrideHeaders make some frameworks run another method or path than the request's:
// the policy would decide one request and the service run another.
var overrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method",
	"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri"}

// methodRefusal says why a request's method cannot be decided as the service would read it:
// methods are case-sensitive (a service may take "get" for something else than GET, rules
// compare upper case), and method or path overrides are refused.
func methodRefusal(r *http.Request, q url.Values) string {
	for i := 0; i < len(r.Method); i++ {
		if c := r.Method[i]; c >= 'a' && c <= 'z' {
			return "method " + strconv.Quote(r.Method) + " is refused: methods are case-sensitive; send it in upper case"
		}
	}
	for _, h := range overrideHeaders {
		if len(r.Header.Values(h)) > 0 {
			return "the " + h + " header is refused: the method and path decided are the ones the service gets"
		}
	}
	if _, ok := q["_method"]; ok {
		return "a _method query parameter is refused: the method decided is the one the service gets"
	}
	return ""
}

// identityHeader reports whether a request header is one that services behind an
// authenticating proxy take as the caller's identity (or its address): a caller's own are
// dropped, the gateway sets its own.
func identityHeader(name string) bool {
	n := strings.ToLower(name)
	for _, p := range []string{"x-forwarded-", "x-remote-", "x-auth-request-", "x-gatehouse-", "impersonate-"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	switch n {
	case "forwarded", "remote-user", "x-user", "x-webauth-user", "x-real-ip", "x-client-ip", "true-client-ip",
		"cf-connecting-ip", "x-cluster-client-ip", "x-original-forwarded-for", "x-authenticated-user", "x-ms-client-principal-name":
		return true
	}
	return false
}

// upgradeOf is the protocol a request asks to upgrade to ("" for none, "websocket" for a
// WebSocket), or why the request is refused.
func upgradeOf(r *http.Request) (string, string) {
	if r.ProtoMajor == 2 && r.Method == http.MethodConnect {
		return "", "extended CONNECT is not relayed"
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		if r.Header.Get("Upgrade") != "" {
			return "", ""
		}
		return "", ""
	}
	up := r.Header.Values("Upgrade")
	if len(up) != 1 || strings.Contains(up[0], ",") {
		return "", "one Upgrade protocol at a time"
	}
	p := strings.TrimSpace(up[0])
	if strings.EqualFold(p, "websocket") {
		return "websocket", ""
	}
	return p, ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// credentialHeaders are left out of what rules see and recorded as [redacted].
func isCredentialHeader(name, tokenHeader string) bool {
	switch strings.ToLower(name) {
	case "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key":
		return true
	}
	return strings.EqualFold(name, tokenHeader)
}

func decisionHeaders(h http.Header, tokenHeader string) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		if isCredentialHeader(k, tokenHeader) {
			continue
		}
		out[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	return out
}

func recordedHeaders(h http.Header, tokenHeader string) []string {
	out := make([]string, 0, len(h))
	for k, vs := range h {
		for _, v := range vs {
			if isCredentialHeader(k, tokenHeader) {
				v = "[redacted]"
			}
			out = append(out, strings.ToLower(k)+": "+truncate(v, 1024))
		}
	}
	sort.Strings(out)
	return out
}

func responseHeaders(h http.Header) []string { return recordedHeaders(h, "") }

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// body is a request body as read for the decision: whole in memory (up to the decision
// limit), or its head with the rest still to stream.
type body struct {
	head    []byte
	rest    io.Reader // nil: head is the whole body
	size    int64     // -1: unknown (the rest streams)
	parsed  bool
	json    any
	jsonErr string
	sum     string
}

// readBody reads a request body up to the resource's decision limit and parses it as JSON
// when it looks like JSON (whatever its Content-Type says: a service may parse it anyway).
// JSON that does not parse strictly, or has duplicate keys, is refused: services disagree
// on what it means.
func readBody(w http.ResponseWriter, r *http.Request, cfg Config, be *config.HTTPBackend) (*body, error) {
	b := &body{}
	if r.Body == nil || r.Body == http.NoBody {
		return b, nil
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(cfg.BodyTimeout))
	r.Body = http.MaxBytesReader(w, r.Body, cfg.MaxBodyBytes)
	limit := be.DecideBodyBytes
	head, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if int64(len(head)) <= limit {
		_ = rc.SetReadDeadline(time.Time{})
		b.head, b.size = head, int64(len(head))
		sum := sha256.Sum256(head)
		b.sum = hex.EncodeToString(sum[:])
		if mediaType(r.Header.Get("Content-Type")) == "application/x-www-form-urlencoded" {
			if f, err := url.ParseQuery(string(head)); err == nil && f.Has("_method") {
				return nil, errors.New("a _method form field is refused: the method decided is the one the service gets")
			}
		}
		if looksJSON(head, r.Header.Get("Content-Type")) {
			v, err := strictJSON(head)
			if err != nil {
				return nil, fmt.Errorf("the request body is not valid JSON: %v", err)
			}
			b.json, b.parsed = v, true
		}
		return b, nil
	}
	b.head, b.rest, b.size = head, r.Body, -1
	if r.ContentLength > 0 {
		b.size = r.ContentLength
	}
	if looksJSON(head, r.Header.Get("Content-Type")) {
		b.jsonErr = fmt.Sprintf("the JSON body is larger than the decision limit (%d bytes)", limit)
	}
	return b, nil
}

func looksJSON(b []byte, ct string) bool {
	mt := mediaType(ct)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return true
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// strictJSON parses one JSON document: valid UTF-8, no duplicate keys, nothing after it.
func strictJSON(b []byte) (any, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("invalid UTF-8")
	}
	if err := noDuplicateKeys(b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON document")
	}
	return foldKeys(v), nil
}

// foldKeys gives rules the body's member names folded to lower case: services differ in
// whether "AMOUNT" is "amount" (Go's encoding/json matches names without regard to case,
// the Kelvin sign and the long s included), so rules read the folded name, and a body with
// two names that fold alike is refused (noDuplicateKeys). Numbers stay json.Number, so
// the policy reads them exactly.
func foldKeys(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[foldKey(k)] = foldKeys(e)
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = foldKeys(e)
		}
	}
	return v
}

// foldKey maps each character to one representative of its case-folding orbit: the
// lower-case ASCII letter where the orbit has one (K, k and the Kelvin sign are k; S, s and
// ſ are s), else its smallest lower-case letter (σ, ς and Σ are ς), else the smallest.
func foldKey(k string) string {
	ascii := true
	for i := 0; i < len(k); i++ {
		if k[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(k)
	}
	var b strings.Builder
	for _, r := range k {
		best, lower := r, rune(-1)
		if unicode.IsLower(r) {
			lower = r
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < best {
				best = f
			}
			if unicode.IsLower(f) && (lower < 0 || f < lower || f >= 'a' && f <= 'z') && !(lower >= 'a' && lower <= 'z') {
				lower = f
			}
		}
		if lower >= 0 {
			best = lower
		}
		b.WriteRune(best)
	}
	return b.String()
}

// noDuplicateKeys refuses an object with a key twice (one parser takes the first, another
// the last: the policy and the service would read different values).
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // the next string token is a key
	}
	var stack []*frame
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				depth++
				if depth > 256 {
					return errors.New("nested deeper than 256 levels")
				}
				if top != nil && top.obj {
					top.key = true
				}
				stack = append(stack, &frame{obj: t == '{', keys: map[string]bool{}, key: t == '{'})
			default:
				depth--
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
			}
		case string:
			if top != nil && top.obj && top.key {
				if top.keys[foldKey(t)] {
					return fmt.Errorf("duplicate key %q (names are compared without regard to case)", t)
				}
				top.keys[foldKey(t)] = true
				top.key = false
				continue
			}
			if top != nil && top.obj {
				top.key = true
			}
		default:
			if top != nil && top.obj {
				top.key = true
			}
		}
	}
}

// requestEvent is the http.request event of a request.
func requestEvent(id uint64, x *exchange, rawPath string, b *body) *schemas.HttpRequest {
	ev := &schemas.HttpRequest{QueryID: id, Method: x.Request.Method, Host: x.HTTP.Host, Path: x.Path, Query: x.RawQuery,
		Route: x.HTTP.Route, Headers: recordedHeaders(x.Request.Header, x.Backend.TokenHeader), Websocket: x.Upgrade == "websocket",
		BodySha256: b.sum, Kube: x.Attrs}
	if rawPath != joinPath(x.Backend.PathPrefix, x.EncodedPath) {
		ev.RawPath = truncate(rawPath, 4096) // normalising changed it: both are recorded
	}
	if b.size > 0 {
		ev.BodyBytes = uint64(b.size)
	}
	if len(b.head) > 0 {
		rec := b.head
		if int64(len(rec)) > x.Backend.RecordBodyBytes {
			rec, ev.BodyTruncated = rec[:x.Backend.RecordBodyBytes], true
		}
		if b.rest != nil {
			ev.BodyTruncated = true
		}
		ev.Body = recordText(rec, x.s.requestMasker())
	}
	return ev
}

// approvalText is what approvers are shown of a held request: method, path, query, the
// exec command, and the body (masked as it is recorded).
func approvalText(x *exchange, b *body) string {
	t := x.Request.Method + " " + x.Path
	if x.RawQuery != "" {
		t += "?" + x.RawQuery
	}
	if x.Kube != nil && len(x.Kube.Command) > 0 {
		t += "\n" + strings.Join(x.Kube.Command, " ")
	}
	if len(b.head) > 0 {
		t += "\n\n" + recordText(b.head, x.s.requestMasker())
	}
	return truncate(t, 2000)
}

// requestHash identifies a request as it would run, for fail-fast approvals: method, path,
// query and body.
func requestHash(x *exchange, b *body) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", x.Resource.Name, x.Request.Method, x.Path, x.RawQuery, b.sum)
	return hex.EncodeToString(h.Sum(nil))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func labelList(l map[string]string) []string {
	out := make([]string, 0, len(l))
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
