// Package kube is the Kubernetes API's profile of the HTTP proxy: each request is read by
// the API server's own request-info parser (k8s.io/apiserver), so that rules decide on the
// verb, API group, resource, subresource, namespace and name the API server will act on;
// the caller's identity is passed on by impersonation (the cluster's RBAC applies too);
// Secret values are masked in every shape a response can carry them unless a rule reveals
// them; and exec and attach streams are recorded as timed terminal frames.
package kube

import (
	"encoding/json"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"

	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/schemas"
)

// Profile is the Kubernetes API's profile.
type Profile struct{}

var infoFactory = &apirequest.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// identityHeaders are what the API server takes as the caller's identity from a
// request: a caller's own are refused, the gateway sets them.
func isIdentityHeader(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "impersonate-") || strings.HasPrefix(n, "x-remote-")
}

// Prepare reads the request as the API server will.
func (Profile) Prepare(x *ghttp.Exchange) (int, string) {
	for k := range x.Request.Header {
		if isIdentityHeader(k) {
			return http.StatusForbidden, "the " + k + " header is refused: the gateway tells the API server who the caller is"
		}
	}
	// The parser reads the URL: give it the normalised path and query (what is forwarded).
	r := x.Request.Clone(x.Request.Context())
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = x.Path, "", x.RawQuery
	info, err := infoFactory.NewRequestInfo(r)
	if err != nil {
		return http.StatusBadRequest, "the request cannot be read as a Kubernetes API request: " + err.Error()
	}
	k := &schemas.KubeRequest{Verb: info.Verb, ResourceRequest: info.IsResourceRequest, ApiGroup: info.APIGroup,
		ApiVersion: info.APIVersion, Resource: info.Resource, Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name}
	switch info.Subresource {
	case "exec", "attach":
		k.Command = x.Query["command"]
		k.Container = x.Query.Get("container")
		k.Stdin = queryBool(x.Query, "stdin")
		k.Tty = queryBool(x.Query, "tty")
	case "portforward":
		// As the API server reads them: every value, split on commas.
		for _, v := range x.Query["ports"] {
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					k.Ports = append(k.Ports, p)
				}
			}
		}
	}
	x.Kube = k
	x.Attrs = &schemas.KubeAttributes{Verb: k.Verb, ApiGroup: k.ApiGroup, ApiVersion: k.ApiVersion, Resource: k.Resource,
		Subresource: k.Subresource, Namespace: k.Namespace, Name: k.Name, Command: k.Command, Container: k.Container, Ports: k.Ports}
	return 0, ""
}

// queryBool reads a boolean option as the API server does (apimachinery's conversion of a
// query value): present and not "false" or "0", in any case, is true — "TRUE", "yes" and
// an empty value included.
func queryBool(q map[string][]string, key string) bool {
	v, ok := q[key]
	if !ok || len(v) == 0 {
		return false
	}
	switch strings.ToLower(v[0]) {
	case "false", "0":
		return false
	}
	return true
}

// Outgoing impersonates the caller: user and groups from its token.
func (Profile) Outgoing(x *ghttp.Exchange, out *http.Request) {
	h := out.Header
	for k := range h {
		if isIdentityHeader(k) {
			h.Del(k)
		}
	}
	user := x.Identity.Name
	if user == "" {
		user = x.Identity.Subject
	}
	h.Set("Impersonate-User", user)
	for _, g := range x.Identity.Groups {
		h.Add("Impersonate-Group", g)
	}
	if x.Kube != nil && x.Kube.Resource == "secrets" {
		// Masking reads JSON: no protobuf or YAML for what may carry Secrets.
		h.Set("Accept", jsonAccept(out.Header.Get("Accept")))
	}
}

// jsonAccept keeps the JSON media types of an Accept header (a table included), or asks
// for plain JSON.
func jsonAccept(a string) string {
	var keep []string
	for _, p := range strings.Split(a, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(p), ";")
		if strings.TrimSpace(mt) == "application/json" {
			keep = append(keep, strings.TrimSpace(p))
		}
	}
	if len(keep) == 0 {
		return "application/json"
	}
	return strings.Join(keep, ", ")
}

// secretFields are where Secret values are, in every shape of response: an object, a
// list's items, a watch event's object, a table row's object — and the last-applied
// annotation kubectl apply leaves, which holds the whole object.
var secretFields = []schemas.MaskField{
	{Path: "$..data.*", Method: "redact", Rule: "gatehouse/kube-secrets"},
	{Path: "$..stringData.*", Method: "redact", Rule: "gatehouse/kube-secrets"},
	{Path: "$..['kubectl.kubernetes.io/last-applied-configuration']", Method: "redact", Rule: "gatehouse/kube-secrets"},
}

// Masks masks Secret values when the decision says so.
func (Profile) Masks(x *ghttp.Exchange, d *schemas.DecisionReply) []schemas.MaskField {
	if d.Mask != nil && d.Mask.KubeSecrets {
		return secretFields
	}
	return nil
}

// Refusal renders the gateway's refusals as the API server's own Status objects, so that
// kubectl shows their reason.
func (Profile) Refusal(status int, detail string) (string, []byte) {
	reason := map[int]string{400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 413: "RequestEntityTooLarge",
		415: "UnsupportedMediaType", 202: "Accepted", 502: "InternalError", 503: "ServiceUnavailable"}[status]
	if reason == "" {
		reason = "InternalError"
	}
	st := map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": "gatehouse: " + detail, "reason": reason, "code": status}
	b, _ := json.Marshal(st)
	return "application/json", append(b, '\n')
}

// Upgrade records exec and attach streams as terminal frames, over WebSocket or SPDY/3.1;
// a port-forward over SPDY/3.1 by its connections (over WebSocket it is recorded as
// http.ws, nil).
func (Profile) Upgrade(x *ghttp.Exchange) ghttp.MessageRecorder {
	if x.Kube == nil {
		return nil
	}
	stream := x.Kube.Subresource == "exec" || x.Kube.Subresource == "attach"
	fail := func(err error) {
		x.SetExit("gatehouse: the SPDY connection cannot be recorded, recording stopped: " + err.Error())
	}
	switch {
	case x.Upgrade == "websocket" && stream:
		return newTermRecorder(x)
	case x.Upgrade == "websocket" || !strings.EqualFold(x.Upgrade, "SPDY/3.1"):
		return nil
	case stream:
		return newSPDYRecorder(execSink{term: newTermRecorder(x)}, fail)
	case x.Kube.Subresource == "portforward":
		return newSPDYRecorder(newPortSink(x), fail)
	}
	return nil
}

// Upgrades takes SPDY/3.1 upgrades (exec, attach, port-forward of older clients, and
// kubectl's fallback when its WebSocket upgrade is refused): decided like the rest, and
// recorded by reading the SPDY frames.
func (Profile) Upgrades(proto string) bool { return strings.EqualFold(proto, "SPDY/3.1") }
