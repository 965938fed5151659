package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

// kubeReplay is a Kubernetes session as the API returns it: a get of a secret masked, a
// delete denied, a POST held and approved, and a `kubectl exec -it` with its terminal.
func kubeReplay() *query.Replay {
	id := schemas.Identity{Subject: "u-ada", Name: "ada@example.com", Issuer: "iss", Groups: []string{"dev"}, Kind: "human"}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var events []schemas.Event
	add := func(p schemas.Payload) {
		at = at.Add(time.Millisecond)
		events = append(events, schemas.Event{ID: "e", Type: p.EventType(), Time: at, SessionID: "kube-1", Seq: uint64(len(events) + 1),
			Identity: id, Resource: "dev-k8s", Payload: p.AppendJSON(nil)})
	}
	add(&schemas.SessionStart{Protocol: "kubernetes", ClientAddr: "10.0.0.8:41000", ApplicationName: "kubectl/v1.31.0", TLS: true, AuditMode: "strict"})
	add(&schemas.HttpRequest{QueryID: 1, Method: "GET", Path: "/api/v1/namespaces/shop/secrets/db",
		Kube: &schemas.KubeAttributes{Verb: "get", ApiVersion: "v1", Resource: "secrets", Namespace: "shop", Name: "db"}})
	add(&schemas.Decision{QueryID: 1, Effect: "mask", Policy: "k8s", Rule: "secrets-masked"})
	add(&schemas.HttpResponse{QueryID: 1, Status: 200, From: "upstream"})
	add(&schemas.HttpBody{QueryID: 1, Data: `{"kind":"Secret","data":{"password":"[masked]"}}` + strings.Repeat(" ", 3) + strings.Repeat("x", 300),
		Masked: []schemas.MaskedCount{{Name: "$.data.*", By: "kube_secrets", Method: "redact", Count: 1}}})
	add(&schemas.HttpDone{QueryID: 1, Status: "ok", Code: 200, BytesOut: 350, BytesRecorded: 350, Masked: 1, DurationUS: 8000})
	add(&schemas.HttpRequest{QueryID: 2, Method: "DELETE", Path: "/api/v1/namespaces/shop/pods/web-1",
		Kube: &schemas.KubeAttributes{Verb: "delete", ApiVersion: "v1", Resource: "pods", Namespace: "shop", Name: "web-1"}})
	add(&schemas.Decision{QueryID: 2, Effect: "deny", Policy: "k8s", Rule: "no-deletes", Reason: "dev may not delete pods"})
	add(&schemas.HttpResponse{QueryID: 2, Status: 403, From: "gateway"})
	add(&schemas.HttpDone{QueryID: 2, Status: "denied", Code: 403, BytesOut: 120, DurationUS: 200})
	add(&schemas.HttpRequest{QueryID: 3, Method: "POST", Path: "/apis/batch/v1/namespaces/shop/jobs", Body: `{"kind":"Job"}`, BodyBytes: 14,
		Kube: &schemas.KubeAttributes{Verb: "create", ApiGroup: "batch", ApiVersion: "v1", Resource: "jobs", Namespace: "shop"}})
	add(&schemas.Decision{QueryID: 3, Effect: "require_approval", Policy: "k8s", Rule: "jobs", Reason: "jobs need a lead"})
	add(&schemas.ApprovalRequested{ApprovalID: "ap-3", Kind: "statement", QueryID: 3, Mode: "hold"})
	add(&schemas.ApprovalDecided{ApprovalID: "ap-3", QueryID: 3, Decision: "approve", By: "bob@example.com", Via: "slack", Outcome: "approved", Approvals: 1})
	add(&schemas.HttpResponse{QueryID: 3, Status: 201, From: "upstream"})
	add(&schemas.HttpDone{QueryID: 3, Status: "ok", Code: 201, DurationUS: 3_000_000})
	add(&schemas.HttpRequest{QueryID: 4, Method: "POST", Path: "/api/v1/namespaces/shop/pods/web-1/exec", Query: "command=sh&tty=true",
		Kube: &schemas.KubeAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "shop", Name: "web-1", Command: []string{"sh"}}})
	add(&schemas.Decision{QueryID: 4, Effect: "allow", Policy: "k8s", Rule: "dev-exec"})
	add(&schemas.HttpResponse{QueryID: 4, Status: 101, From: "upstream"})
	add(&schemas.KubeIo{QueryID: 4, Frames: []schemas.TermFrame{{TUS: 0, Code: "r", Data: "100x30"}, {TUS: 100_000, Code: "o", Data: "# "},
		{TUS: 900_000, Code: "i", Data: "id\r"}, {TUS: 1_000_000, Code: "o", Data: "id\r\nuid=0(root)\r\n# "}}})
	add(&schemas.HttpDone{QueryID: 4, Status: "ok", Code: 101, Exit: "command terminated with non-zero exit code: exit status 3", DurationUS: 2_000_000})
	add(&schemas.SessionEnd{Reason: "client_closed", Statements: 4, Denied: 1, Held: 1, BytesIn: 10, BytesOut: 600})
	return &query.Replay{SessionID: "kube-1", Events: events, ChainOK: true}
}

// The replay of a Kubernetes session prints each request as the API server read it, its
// decision, response, masked body excerpt and end; then plays the exec's terminal.
func TestKubeReplayPrintsRequestsAndPlaysExec(t *testing.T) {
	url := serve(t, kubeReplay())
	code, out, errOut := run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--no-wait")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"Kubernetes session kube-1\n",
		"  who:      ada@example.com [sub u-ada] (groups dev)\n",
		"  client:   10.0.0.8:41000, kubectl/v1.31.0, tls=true, audit strict\n",
		"client_closed, 4 request(s) (1 denied, 1 held for approval)",
		" request 1 get secrets -n shop db (GET /api/v1/namespaces/shop/secrets/db): MASK by k8s/secrets-masked\n",
		"    response: 200 (from the upstream)\n",
		`    response body: 1 chunk(s) recorded, 1 value(s) masked: {"kind":"Secret","data":{"password":"[masked]"}} xxxxx`,
		"xxx…\n",
		"    done:     ok 200 after 8ms, 350 bytes out (350 recorded), 1 value(s) masked\n",
		" request 2 delete pods -n shop web-1 (DELETE /api/v1/namespaces/shop/pods/web-1): DENY by k8s/no-deletes: dev may not delete pods\n",
		"    response: 403 (from the gateway)\n",
		" request 3 create jobs -n shop (POST /apis/batch/v1/namespaces/shop/jobs): REQUIRE_APPROVAL by k8s/jobs: jobs need a lead → approved by bob@example.com (approval ap-3)\n",
		`    body:     14 bytes: {"kind":"Job"}` + "\n",
		" request 4 create pods/exec -n shop web-1 [sh] (POST /api/v1/namespaces/shop/pods/web-1/exec?command=sh&tty=true): ALLOW by k8s/dev-exec\n",
		"    terminal: 4 frame(s) over 1s; 100x30\n",
		"    exit:     command terminated with non-zero exit code: exit status 3\n",
		"hash chain intact (22 events)\n",
		"▶ request 4 (create pods/exec -n shop web-1 [sh]): 1s of terminal output (at once)\n",
		"# id\r\nuid=0(root)\r\n# \n■ end of request 4\n",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "id\r\r", "typed input is not played")

	// --no-play: the requests only.
	code, out, _ = run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--no-play")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "▶")

	// --asciicast: the exec's terminal, with input when asked.
	file := filepath.Join(t.TempDir(), "exec.cast")
	code, _, errOut = run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--asciicast", file, "--input")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, `wrote request 4 (create pods/exec -n shop web-1 [sh]), 4 frames over 1s, to `+file)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Regexp(t, `^\{"version":2,"width":100,"height":30,"timestamp":\d+,"title":"ada@example.com on dev-k8s, request 4`, lines[0])
	require.Equal(t, []string{`[0.000000,"r","100x30"]`, `[0.100000,"o","# "]`, `[0.900000,"i","id\r"]`, `[1.000000,"o","id\r\nuid=0(root)\r\n# "]`}, lines[1:])
	code, out, _ = run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--asciicast", "-", "--channel", "4")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"version":2`)

	code, _, errOut = run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--asciicast", "-", "--channel", "2")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `session kube-1 has no terminal output to write (requests with terminal output: request 4 (create pods/exec -n shop web-1 [sh]))`)
	code, _, errOut = run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--channel", "9")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "session kube-1 has no request 9")
	code, _, errOut = run("sessions", "replay", "kube-1", "--url", url, "--token", testToken, "--channel", "x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--channel: "x" is not a request number`)
}

// An HTTP session without a terminal: requests with their route and normalised path, a
// WebSocket, and --asciicast refused plainly.
func TestHTTPReplay(t *testing.T) {
	id := schemas.Identity{Subject: "svc-orders", Issuer: "iss", Kind: "service"}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var events []schemas.Event
	add := func(p schemas.Payload) {
		at = at.Add(time.Millisecond)
		events = append(events, schemas.Event{ID: "e", Type: p.EventType(), Time: at, SessionID: "http-1", Seq: uint64(len(events) + 1),
			Identity: id, Resource: "orders-api", Payload: p.AppendJSON(nil)})
	}
	add(&schemas.HttpRequest{QueryID: 1, Method: "GET", Path: "/orders/7", RawPath: "/orders/%2e/7", Route: "/orders/{id}"})
	add(&schemas.Decision{QueryID: 1, Effect: "allow", Policy: "orders", Rule: "reads"})
	add(&schemas.HttpResponse{QueryID: 1, Status: 200, From: "upstream"})
	add(&schemas.HttpBody{QueryID: 1, Data: "{\"id\": 7,\n  \"email\": \"[email]\"}"})
	add(&schemas.HttpDone{QueryID: 1, Status: "ok", Code: 200, BytesOut: 30, BytesRecorded: 30, DurationUS: 1500})
	add(&schemas.HttpRequest{QueryID: 3, Method: "POST", Path: "/x\x1b[2J", Body: "a\x1b]0;pwned\x07b \xff \ufffd", BodyBytes: 12})
	add(&schemas.HttpDone{QueryID: 3, Status: "refused", Error: "bad \x1b[31mpath"})
	add(&schemas.HttpRequest{QueryID: 2, Method: "GET", Path: "/live", Websocket: true})
	add(&schemas.Decision{QueryID: 2, Effect: "allow", Policy: "orders", Rule: "reads"})
	add(&schemas.HttpWs{QueryID: 2, Frames: []schemas.WSFrame{{From: "client", Op: "text", Data: "hi", Bytes: 2}, {From: "server", Op: "text", Data: "yo", Bytes: 2},
		{From: "server", Op: "text", Data: "[email]", Bytes: 9}}, Masked: []schemas.MaskedCount{{Name: "ws", By: "email", Method: "redact", Count: 1}}})
	add(&schemas.HttpDone{QueryID: 2, Status: "error", Code: 101, Error: "upstream closed", DurationUS: 1_000_000})
	url := serve(t, &query.Replay{SessionID: "http-1", Events: events, ChainOK: false, ChainError: "seq 3: hash differs"})
	code, out, errOut := run("sessions", "replay", "http-1", "--url", url, "--token", testToken)
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"HTTP session http-1\n",
		"  who:      svc-orders\n",
		"  resource: orders-api (the trail has no session.start)\n",
		" request 1 GET /orders/7 (route /orders/{id}): ALLOW by orders/reads\n",
		"    sent as:  /orders/%2e/7 (normalised to the path above)\n",
		`    response body: 1 chunk(s) recorded: {"id": 7, "email": "[email]"}` + "\n",
		"    done:     ok 200 after 2ms, 30 bytes out (30 recorded)\n",
		" request 2 GET /live [websocket]: ALLOW by orders/reads\n",
		"    websocket: 1 message(s) from the client, 2 from the server, 1 value(s) masked\n",
		"    done:     error 101 after 1s, 0 bytes out (0 recorded): upstream closed\n",
		"WARNING: hash chain broken: seq 3: hash differs\n",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "▶")
	// What a client or service sent cannot drive the auditor's terminal.
	require.NotContains(t, out, "\x1b")
	require.NotContains(t, out, "\a")
	require.Contains(t, out, ` request 3 POST /x\x1b[2J: no decision recorded`+"\n")
	require.Contains(t, out, `    body:     12 bytes: a\x1b]0;pwned\ab `+"\ufffd \ufffd\n", "invalid UTF-8 arrives as U+FFFD")
	require.Contains(t, out, `    done:     refused after 0s, 0 bytes out (0 recorded): bad \x1b[31mpath`+"\n")
	code, _, errOut = run("sessions", "replay", "http-1", "--url", url, "--token", testToken, "--asciicast", "-")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "session http-1 has no terminal output to write (requests with terminal output: none)")
}
