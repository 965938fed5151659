package query

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// httpStart is when the fabricated HTTP and Kubernetes sessions start.
var httpStart = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// chainedEvents makes a hash-chained trail of payloads for a session on resource.
type chainedEvents struct {
	t        *testing.T
	session  string
	resource string
	at       time.Time
	prev     string
	out      []schemas.Event
}

func (c *chainedEvents) add(d time.Duration, p schemas.Payload) {
	c.at = c.at.Add(d)
	id := schemas.Identity{Subject: "u-ada", Name: "ada@example.com", Issuer: "iss", Groups: []string{"dev"}, Kind: "human"}
	e := schemas.Event{ID: c.session + "-" + itoa(uint64(len(c.out)+1)), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: c.at,
		SessionID: c.session, Seq: uint64(len(c.out) + 1), Identity: id, Resource: c.resource, PolicyRevision: 4, PrevHash: c.prev, Payload: p.AppendJSON(nil)}
	h, err := e.ComputeHash()
	require.NoError(c.t, err)
	e.Hash, c.prev = h, h
	c.out = append(c.out, e)
}

// httpEvents is an HTTP session on orders-api: a GET answered with a masked body in two
// chunks, a POST denied, a DELETE held and approved, and a WebSocket.
func httpEvents(t *testing.T, session string) []schemas.Event {
	c := &chainedEvents{t: t, session: session, resource: "orders-api", at: httpStart}
	c.add(0, &schemas.SessionStart{Protocol: "http", ClientAddr: "10.0.0.7:40000", ApplicationName: "curl/8.5.0", TLS: true, AuditMode: "strict"})
	c.add(time.Millisecond, &schemas.HttpRequest{QueryID: 1, Method: "GET", Host: "orders.example.com", Path: "/orders/7", RawPath: "/orders/./7",
		Query: "expand=items", Route: "/orders/{id}", Headers: []string{"user-agent: curl/8.5.0", "authorization: [redacted]", "x-forwarded-for: 10.1.1.1, 10.2.2.2"}})
	c.add(0, &schemas.Decision{QueryID: 1, Effect: "mask", Policy: "orders", Rule: "mask-cards"})
	c.add(time.Millisecond, &schemas.HttpResponse{QueryID: 1, Status: 200, Headers: []string{"content-type: application/json"}, From: "upstream"})
	c.add(0, &schemas.HttpBody{QueryID: 1, Chunk: 1, Data: `"card":"****1111"}`, Masked: []schemas.MaskedCount{{Name: "$.card", By: "$.card", Method: "partial", Count: 1}}})
	c.add(0, &schemas.HttpBody{QueryID: 1, Chunk: 0, Data: `{"id":7,`})
	c.add(0, &schemas.HttpDone{QueryID: 1, Status: "ok", Code: 200, BytesOut: 27, BytesRecorded: 27, Masked: 1, DurationUS: 4200})
	c.add(time.Millisecond, &schemas.HttpRequest{QueryID: 2, Method: "POST", Path: "/orders", Body: `{"customer":"c-1","note":"rush"}`, BodyBytes: 32})
	c.add(0, &schemas.Decision{QueryID: 2, Effect: "deny", Policy: "orders", Rule: "read-only", Reason: "orders are read-only for dev"})
	c.add(0, &schemas.HttpResponse{QueryID: 2, Status: 403, From: "gateway"})
	c.add(0, &schemas.HttpDone{QueryID: 2, Status: "denied", Code: 403, BytesOut: 40, DurationUS: 300})
	c.add(time.Millisecond, &schemas.HttpRequest{QueryID: 3, Method: "DELETE", Path: "/orders/7"})
	c.add(0, &schemas.Decision{QueryID: 3, Effect: "require_approval", Policy: "orders", Rule: "deletes", Reason: "deletes need approval"})
	c.add(0, &schemas.ApprovalRequested{ApprovalID: "ap-9", Kind: "statement", QueryID: 3, Mode: "hold", Approvers: []string{"leads"}, Required: 1, Deadline: c.at.Add(time.Hour)})
	c.add(5*time.Second, &schemas.ApprovalDecided{ApprovalID: "ap-9", QueryID: 3, Decision: "approve", By: "bob@example.com", Via: "slack", Outcome: "approved", Approvals: 1})
	c.add(time.Millisecond, &schemas.HttpResponse{QueryID: 3, Status: 204, From: "upstream"})
	c.add(0, &schemas.HttpDone{QueryID: 3, Status: "ok", Code: 204, DurationUS: 5_100_000})
	c.add(time.Millisecond, &schemas.HttpRequest{QueryID: 4, Method: "GET", Path: "/orders/live", Websocket: true})
	c.add(0, &schemas.Decision{QueryID: 4, Effect: "allow", Policy: "orders", Rule: "reads"})
	c.add(0, &schemas.HttpResponse{QueryID: 4, Status: 101, From: "upstream"})
	c.add(time.Millisecond, &schemas.HttpWs{QueryID: 4, Chunk: 0, Frames: []schemas.WSFrame{{TUS: 10, From: "client", Op: "text", Data: "sub", Bytes: 3},
		{TUS: 20, From: "server", Op: "text", Data: `{"id":8}`, Bytes: 8}}, Dropped: 5})
	c.add(time.Second, &schemas.HttpDone{QueryID: 4, Status: "client_closed", Code: 101, DurationUS: 1_000_000})
	c.add(time.Millisecond, &schemas.SessionEnd{Reason: "client_closed", Statements: 4, Denied: 1, Held: 1, DurationUS: 6_000_000, BytesIn: 500, BytesOut: 900})
	return c.out
}

// kubeEvents is a Kubernetes session on dev-k8s: a list of pods, and a `kubectl exec -it`
// into one with its terminal (a resize first, typed input, output in two chunks).
func kubeEvents(t *testing.T, session string) []schemas.Event {
	c := &chainedEvents{t: t, session: session, resource: "dev-k8s", at: httpStart}
	c.add(0, &schemas.SessionStart{Protocol: "kubernetes", ClientAddr: "10.0.0.8:41000", ApplicationName: "kubectl/v1.31.0", TLS: true, AuditMode: "strict"})
	c.add(time.Millisecond, &schemas.HttpRequest{QueryID: 1, Method: "GET", Path: "/api/v1/namespaces/shop/pods", Query: "limit=500",
		Headers: []string{"user-agent: kubectl/v1.31.0 (linux/amd64)"}, Kube: &schemas.KubeAttributes{Verb: "list", ApiVersion: "v1", Resource: "pods", Namespace: "shop"}})
	c.add(0, &schemas.Decision{QueryID: 1, Effect: "allow", Policy: "k8s", Rule: "dev-reads"})
	c.add(0, &schemas.HttpResponse{QueryID: 1, Status: 200, From: "upstream"})
	c.add(0, &schemas.HttpBody{QueryID: 1, Data: `{"kind":"PodList","items":[{"metadata":{"name":"web-1"}}]}`})
	c.add(0, &schemas.HttpDone{QueryID: 1, Status: "ok", Code: 200, BytesOut: 58, BytesRecorded: 58, DurationUS: 9000})
	c.add(time.Millisecond, &schemas.HttpRequest{QueryID: 2, Method: "POST", Path: "/api/v1/namespaces/shop/pods/web-1/exec",
		Query: "command=sh&container=app&stdin=true&stdout=true&tty=true",
		Kube:  &schemas.KubeAttributes{Verb: "create", ApiVersion: "v1", Resource: "pods", Subresource: "exec", Namespace: "shop", Name: "web-1", Container: "app", Command: []string{"sh"}}})
	c.add(0, &schemas.Decision{QueryID: 2, Effect: "allow", Policy: "k8s", Rule: "dev-exec"})
	c.add(0, &schemas.HttpResponse{QueryID: 2, Status: 101, From: "upstream"})
	c.add(time.Second, &schemas.KubeIo{QueryID: 2, Chunk: 1, Frames: []schemas.TermFrame{{TUS: 1_500_000, Code: "o", Data: "Linux\r\n# "}},
		Masked: []schemas.MaskedCount{{Name: "terminal", By: "email", Method: "redact", Count: 1}}})
	c.add(0, &schemas.KubeIo{QueryID: 2, Chunk: 0, Frames: []schemas.TermFrame{{TUS: 0, Code: "r", Data: "120x40"}, {TUS: 100_000, Code: "o", Data: "# "},
		{TUS: 1_000_000, Code: "i", Data: "uname\r"}, {TUS: 1_100_000, Code: "o", Data: "uname\r\n"}}})
	c.add(time.Second, &schemas.HttpDone{QueryID: 2, Status: "ok", Code: 101, Exit: "Success", DurationUS: 2_500_000})
	c.add(time.Millisecond, &schemas.SessionEnd{Reason: "client_closed", Statements: 2, DurationUS: 3_000_000})
	return c.out
}

func TestHTTPSessionOf(t *testing.T) {
	events := httpEvents(t, "http-1")
	require.True(t, IsHTTP(events))
	require.False(t, IsSSH(events))
	require.False(t, IsHTTP(sshEvents(t, "ssh-1")))
	s := HTTPSessionOf(events)
	require.Equal(t, "http-1", s.ID)
	require.Equal(t, "http", s.Protocol)
	require.Equal(t, "orders-api", s.Resource)
	require.NotNil(t, s.Start)
	require.NotNil(t, s.End)
	require.Len(t, s.Requests, 4)

	get := s.Requests[0]
	require.Equal(t, "GET /orders/7?expand=items", get.Text())
	require.Equal(t, "masked", get.Outcome)
	require.Equal(t, uint32(200), get.Response.Status)
	require.Equal(t, `{"id":7,"card":"****1111"}`, get.BodyText(), "chunks in their order")
	require.Equal(t, uint64(1), get.BodyMasked)
	require.Equal(t, "ok", get.Done.Status)
	require.False(t, get.HasOutput())

	post := s.Requests[1]
	require.Equal(t, "denied", post.Outcome)
	require.Equal(t, "orders are read-only for dev", post.Decision.Reason)
	require.Equal(t, uint32(403), post.Response.Status)

	del := s.Requests[2]
	require.Equal(t, "approved", del.Outcome)
	require.Equal(t, []string{"bob@example.com"}, del.Approvers)
	require.Equal(t, "ap-9", del.Approval)

	ws := s.Requests[3]
	require.Len(t, ws.WS, 2)
	require.Equal(t, uint64(5), ws.WSDropped)
	require.Equal(t, "client_closed", ws.Done.Status)

	// A binary body is told as such.
	r := &HTTPRequest{Body: []schemas.HttpBody{{Data: base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 3}), Binary: true}}}
	require.Equal(t, "(4 bytes of binary data)", r.BodyText())
}

func TestKubeSessionOf(t *testing.T) {
	events := kubeEvents(t, "kube-1")
	require.True(t, IsHTTP(events))
	s := HTTPSessionOf(events)
	require.Equal(t, "kubernetes", s.Protocol)
	require.Len(t, s.Requests, 2)
	list, ex := s.Requests[0], s.Requests[1]
	require.Equal(t, "list pods -n shop (GET /api/v1/namespaces/shop/pods?limit=500)", list.Text())
	require.Equal(t, "create pods/exec -n shop web-1 -c app [sh] (POST /api/v1/namespaces/shop/pods/web-1/exec?command=sh&container=app&stdin=true&stdout=true&tty=true)", ex.Text())
	require.Equal(t, `request 2 (create pods/exec -n shop web-1 -c app [sh])`, ex.Describe())
	require.False(t, list.HasOutput())
	require.True(t, ex.HasOutput())
	require.Equal(t, 2, ex.IOChunks)
	require.Equal(t, uint64(1), ex.IOMasked)
	require.Equal(t, "Success", ex.Done.Exit)
	term := ex.Terminal()
	require.Equal(t, uint32(120), term.Cols)
	require.Equal(t, uint32(40), term.Rows)
	require.Equal(t, "# uname\r\nLinux\r\n# ", string(term.Output()), "chunks in their order")
	require.Equal(t, 1500*time.Millisecond, term.Duration())

	// Without a session.start, the request info tells a Kubernetes session.
	s = HTTPSessionOf(events[1:])
	require.Equal(t, "kubernetes", s.Protocol)
	require.Nil(t, s.Start)
	s = HTTPSessionOf(httpEvents(t, "h")[1:])
	require.Equal(t, "http", s.Protocol)
}

// A kubectl exec's terminal is written as an SSH channel's is: its size from its first
// resize, output and input (with Input) in play order.
func TestWriteKubeExecAsciicast(t *testing.T) {
	s := HTTPSessionOf(kubeEvents(t, "kube-1"))
	ex := s.Requests[1]
	var b bytes.Buffer
	require.NoError(t, WriteAsciicast(&b, ex, AsciicastOptions{Title: KubeAsciicastTitle(s, ex), Input: true}))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	var header map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &header))
	require.Equal(t, 120.0, header["width"])
	require.Equal(t, 40.0, header["height"])
	require.Equal(t, float64(ex.Time.Unix()), header["timestamp"])
	require.Equal(t, `ada@example.com on dev-k8s, request 2 (create pods/exec -n shop web-1 -c app [sh]), 2026-12-06T10:00:00Z`, header["title"])
	require.Equal(t, []string{`[0.000000,"r","120x40"]`, `[0.100000,"o","# "]`, `[1.000000,"i","uname\r"]`, `[1.100000,"o","uname\r\n"]`, `[1.500000,"o","Linux\r\n# "]`}, lines[1:])
}

// HTTP requests map to HTTP Activity by method, with the request's URL, user agent and
// headers; decisions carry a disposition; responses and ends the status code.
func TestOCSFMapsHTTPSessions(t *testing.T) {
	events := httpEvents(t, "http-1")
	type mapped struct {
		activity int
		name     string
		status   int
	}
	seen := map[string][]mapped{}
	recs := map[string][]map[string]any{}
	for i := range events {
		rec := roundTrip(t, OCSFProtocol(&events[i], "http"))
		typ := events[i].Type
		switch typ {
		case schemas.TypeSessionStart, schemas.TypeSessionEnd:
			require.EqualValues(t, 3002, rec["class_uid"], "sessions keep their generic mapping")
			continue
		case schemas.TypeApprovalRequested, schemas.TypeApprovalDecided:
			require.EqualValues(t, 6003, rec["class_uid"], "approvals keep their generic mapping")
			continue
		}
		require.EqualValues(t, 4002, rec["class_uid"], typ)
		require.EqualValues(t, 4, rec["category_uid"])
		require.EqualValues(t, 4002*100+int(rec["activity_id"].(float64)), rec["type_uid"])
		require.Equal(t, map[string]any{"name": "orders-api", "svc_name": "http"}, rec["dst_endpoint"])
		m := mapped{int(rec["activity_id"].(float64)), rec["activity_name"].(string), int(rec["status_id"].(float64))}
		if !containsMapped(seen[typ], m) {
			seen[typ] = append(seen[typ], m)
		}
		recs[typ] = append(recs[typ], rec)
	}
	require.Equal(t, map[string][]mapped{
		"http.request":  {{3, "Get", 0}, {6, "Post", 0}, {2, "Delete", 0}},
		"decision":      {{99, "Allow", 1}, {99, "Refuse", 2}, {99, "Hold", 99}},
		"http.response": {{99, "Response", 0}},
		"http.body":     {{99, "Traffic", 1}},
		"http.done":     {{99, "Done", 1}, {99, "Done", 2}},
		"http.ws":       {{99, "Traffic", 1}},
	}, seen)

	get := recs["http.request"][0]
	req := get["http_request"].(map[string]any)
	require.Equal(t, "GET", req["http_method"])
	require.Equal(t, "curl/8.5.0", req["user_agent"])
	require.Equal(t, []any{"10.1.1.1", "10.2.2.2"}, req["x_forwarded_for"])
	require.Equal(t, map[string]any{"hostname": "orders.example.com", "path": "/orders/7", "query_string": "expand=items",
		"url_string": "//orders.example.com/orders/7?expand=items"}, req["url"])
	require.Contains(t, req["http_headers"], map[string]any{"name": "authorization", "value": "[redacted]"})
	require.Equal(t, "request 1: GET /orders/7?expand=items", get["message"])

	dec := recs["decision"]
	require.EqualValues(t, 1, dec[0]["disposition_id"])
	require.Equal(t, "masked", dec[0]["status_detail"])
	require.EqualValues(t, 2, dec[1]["disposition_id"])
	require.Equal(t, "Blocked", dec[1]["disposition"])
	require.Equal(t, "orders are read-only for dev", dec[1]["status_detail"])
	require.EqualValues(t, 99, dec[2]["disposition_id"])

	require.Equal(t, map[string]any{"code": 200.0}, recs["http.response"][0]["http_response"])
	done := recs["http.done"]
	require.Equal(t, map[string]any{"code": 200.0}, done[0]["http_response"])
	require.Equal(t, "ok", done[0]["status_code"])
	require.EqualValues(t, 2, done[1]["status_id"])
	require.Equal(t, "denied", done[1]["status_code"])
	require.Equal(t, map[string]any{"bytes_in": 3.0, "bytes_out": 8.0, "bytes": 11.0}, recs["http.ws"][0]["traffic"])

	require.Equal(t, map[string]any{"bytes_in": 0.0, "bytes_out": 18.0, "bytes": 18.0}, recs["http.body"][0]["traffic"])
	bin := events[4]
	bin.Payload = (&schemas.HttpBody{QueryID: 1, Data: base64.StdEncoding.EncodeToString([]byte{1, 2, 3, 4, 5}), Binary: true}).AppendJSON(nil)
	require.Equal(t, map[string]any{"bytes_in": 0.0, "bytes_out": 5.0, "bytes": 5.0}, roundTrip(t, OCSFProtocol(&bin, "http"))["traffic"])

	// Without the session's protocol, a request still says it is HTTP.
	require.EqualValues(t, 4002, roundTrip(t, OCSF(&events[1]))["class_uid"])
	// PATCH, which OCSF 1.1 lacks, is Other.
	id, name := httpActivity("PATCH")
	require.Equal(t, 99, id)
	require.Equal(t, "Patch", name)
}

// Kubernetes requests map to API Activity: the verb as the operation and the activity it
// falls in, the object as the resource; exec terminals are traffic.
func TestOCSFMapsKubeSessions(t *testing.T) {
	events := kubeEvents(t, "kube-1")
	var reqs, io []map[string]any
	for i := range events {
		rec := roundTrip(t, OCSFProtocol(&events[i], "kubernetes"))
		switch events[i].Type {
		case schemas.TypeSessionStart, schemas.TypeSessionEnd:
			require.EqualValues(t, 3002, rec["class_uid"])
			continue
		case schemas.TypeHttpRequest:
			reqs = append(reqs, rec)
		case schemas.TypeKubeIo:
			io = append(io, rec)
		}
		require.EqualValues(t, 6003, rec["class_uid"], events[i].Type)
		require.EqualValues(t, 6, rec["category_uid"])
		require.Equal(t, map[string]any{"name": "dev-k8s", "svc_name": "kubernetes"}, rec["dst_endpoint"])
	}
	require.Len(t, reqs, 2)
	list, ex := reqs[0], reqs[1]
	require.EqualValues(t, 2, list["activity_id"])
	require.Equal(t, "Read", list["activity_name"])
	require.Equal(t, "list", list["api"].(map[string]any)["operation"])
	require.Equal(t, []any{map[string]any{"type": "pods", "name": "", "namespace": "shop", "data": map[string]any{"api_version": "v1"}}}, list["resources"])
	require.Equal(t, "kubectl/v1.31.0 (linux/amd64)", list["http_request"].(map[string]any)["user_agent"])
	require.EqualValues(t, 1, ex["activity_id"])
	require.Equal(t, "create", ex["api"].(map[string]any)["operation"])
	require.Equal(t, []any{map[string]any{"type": "pods", "name": "web-1", "namespace": "shop",
		"data": map[string]any{"api_version": "v1", "subresource": "exec", "container": "app", "command": []any{"sh"}}}}, ex["resources"])
	require.Len(t, io, 2)
	require.Equal(t, "Traffic", io[0]["activity_name"])

	// Without the session's protocol, a request with the API server's request info and a
	// kube.io still say they are Kubernetes.
	require.EqualValues(t, 6003, roundTrip(t, OCSF(&events[1]))["class_uid"])
	require.EqualValues(t, 6003, roundTrip(t, OCSF(&events[9]))["class_uid"])
	for verb, want := range map[string]int{"get": 2, "watch": 2, "update": 3, "patch": 3, "delete": 4, "deletecollection": 4, "proxy": 99} {
		id, _, op := kubeActivity(&schemas.HttpRequest{Method: "GET", Kube: &schemas.KubeAttributes{Verb: verb}})
		require.Equal(t, want, id, verb)
		require.Equal(t, verb, op)
	}
	_, _, op := kubeActivity(&schemas.HttpRequest{Method: "GET"})
	require.Equal(t, "get", op)
}
