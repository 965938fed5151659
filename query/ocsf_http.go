package query

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// The requests of HTTP sessions map to OCSF HTTP Activity (class 4002, category 4 Network
// Activity), whose activities are the request methods (1 Connect, 2 Delete, 3 Get, 4 Head,
// 5 Options, 6 Post, 7 Put, 8 Trace; PATCH, which OCSF 1.1 lacks, is 99 "Patch"). The
// requests of Kubernetes sessions map to API Activity (class 6003, category 6 Application
// Activity): 1 Create, 2 Read (get, list, watch), 3 Update (update, patch), 4 Delete
// (delete, deletecollection), 99 Other (the verb), with api.operation the verb and
// resources the object ([{type, name, namespace}]; the API group, version and subresource
// under resources[0].data). A session's request events stay in their one class:
//
//   - http.request: its method's activity, status Unknown (its decision follows), with
//     http_request (http_method, url: hostname, path, query_string, url_string;
//     user_agent, referrer, the recorded headers: credentials are already [redacted])
//   - decision: the same class, activity 99 ("Allow", "Hold", "Refuse"), with disposition:
//     allow → 1 Allowed, mask → 1 Allowed (status_detail "masked"), deny → 2 Blocked
//     (status Failure), require_approval → 99 Other ("Held for approval", status Other)
//   - http.response: 99 "Response", with http_response.code
//   - http.body, http.ws, kube.io: 99 "Traffic", with the bytes recorded
//   - http.done: 99 "Done", with http_response.code, status Success for ok, Failure for
//     error, denied, refused, revoked and a client that went, and the Kubernetes exec's
//     exit in status_detail
//
// Session starts and ends, refusals, approvals, grants and revocations keep their generic
// mapping (Authentication, User Access Management, ...).

// ocsfHTTPActivity is OCSF's HTTP Activity class.
const ocsfHTTPActivity = 4002

// ocsfHTTP maps an event of an HTTP (kube false) or Kubernetes (kube true) session, or
// returns nil for the generic mapping.
func ocsfHTTP(e *schemas.Event, payload map[string]any, kube bool) map[string]any {
	class, svc := ocsfHTTPActivity, "http"
	if kube {
		class, svc = ocsfAPIActivity, "kubernetes"
	}
	var rec map[string]any
	base := func(activity int, name string, status int) {
		rec = ocsfBase(e, payload, class, activity, name, status)
		rec["dst_endpoint"] = map[string]any{"name": e.Resource, "svc_name": svc}
	}
	switch e.Type {
	case schemas.TypeHttpRequest:
		var p schemas.HttpRequest
		if e.Decode(&p) != nil {
			return nil
		}
		if kube {
			activity, name, verb := kubeActivity(&p)
			base(activity, name, ocsfStatusUnknown)
			rec["api"] = map[string]any{"operation": verb, "service": map[string]any{"name": e.Resource},
				"request": map[string]any{"uid": fmt.Sprint(p.QueryID)}}
			if k := p.Kube; k != nil && k.Resource != "" {
				res := map[string]any{"type": k.Resource, "name": k.Name, "namespace": k.Namespace}
				data := map[string]any{}
				for key, v := range map[string]string{"api_group": k.ApiGroup, "api_version": k.ApiVersion, "subresource": k.Subresource, "container": k.Container} {
					if v != "" {
						data[key] = v
					}
				}
				if len(k.Command) > 0 {
					data["command"] = k.Command
				}
				if len(data) > 0 {
					res["data"] = data
				}
				rec["resources"] = []map[string]any{res}
			}
		} else {
			activity, name := httpActivity(p.Method)
			base(activity, name, ocsfStatusUnknown)
		}
		rec["http_request"] = ocsfHTTPRequest(&p)
		rec["message"] = fmt.Sprintf("request %d: %s", p.QueryID, HTTPRequestText(&p))
		if p.BodyBytes > 0 {
			rec["traffic"] = traffic(p.BodyBytes, 0)
		}
	case schemas.TypeDecision:
		var p schemas.Decision
		if e.Decode(&p) != nil {
			return nil
		}
		switch p.Effect {
		case "deny":
			base(99, "Refuse", ocsfStatusFailure)
			rec["disposition_id"], rec["disposition"] = 2, "Blocked"
		case "require_approval":
			base(99, "Hold", ocsfStatusOther)
			rec["disposition_id"], rec["disposition"] = 99, "Held for approval"
		default:
			base(99, "Allow", ocsfStatusSuccess)
			rec["disposition_id"], rec["disposition"] = 1, "Allowed"
		}
		detail := strings.TrimSpace(p.Reason)
		if p.Effect == "mask" {
			detail = strings.TrimSpace("masked " + detail)
		}
		rec["status_detail"] = detail
		rec["message"] = fmt.Sprintf("request %d: %s by %s", p.QueryID, p.Effect, decidedBy(&p))
	case schemas.TypeHttpResponse:
		var p schemas.HttpResponse
		if e.Decode(&p) != nil {
			return nil
		}
		base(99, "Response", ocsfStatusUnknown)
		rec["http_response"] = map[string]any{"code": p.Status}
		rec["message"] = fmt.Sprintf("request %d: %d from the %s", p.QueryID, p.Status, p.From)
	case schemas.TypeHttpBody:
		var p schemas.HttpBody
		if e.Decode(&p) != nil {
			return nil
		}
		n := uint64(len(p.Data))
		if p.Binary {
			n = uint64(base64.StdEncoding.DecodedLen(len(p.Data)) - strings.Count(p.Data, "="))
		}
		base(99, "Traffic", ocsfStatusSuccess)
		rec["traffic"] = traffic(0, n)
	case schemas.TypeHttpWs:
		var p schemas.HttpWs
		if e.Decode(&p) != nil {
			return nil
		}
		var in, out uint64
		for _, f := range p.Frames {
			if f.From == "client" {
				in += f.Bytes
			} else {
				out += f.Bytes
			}
		}
		base(99, "Traffic", ocsfStatusSuccess)
		rec["traffic"] = traffic(in, out)
	case schemas.TypeKubeIo:
		var p schemas.KubeIo
		if e.Decode(&p) != nil {
			return nil
		}
		base(99, "Traffic", ocsfStatusSuccess)
		rec["traffic"] = termTraffic(p.Frames)
	case schemas.TypeHttpDone:
		var p schemas.HttpDone
		if e.Decode(&p) != nil {
			return nil
		}
		status := ocsfStatusFailure
		if p.Status == "ok" {
			status = ocsfStatusSuccess
		}
		base(99, "Done", status)
		if p.Code != 0 {
			rec["http_response"] = map[string]any{"code": p.Code}
		}
		rec["traffic"] = traffic(0, p.BytesOut)
		rec["duration"] = p.DurationUS / 1000
		rec["status_code"] = p.Status
		rec["status_detail"] = strings.TrimSpace(strings.Join(nonEmpty(p.Error, p.Exit), "; "))
		rec["message"] = fmt.Sprintf("request %d: %s", p.QueryID, p.Status)
	default:
		return nil
	}
	return rec
}

// ocsfHTTPRequest is OCSF's http_request object of a request.
func ocsfHTTPRequest(p *schemas.HttpRequest) map[string]any {
	u := map[string]any{"path": p.Path}
	us := p.Path
	if p.Query != "" {
		u["query_string"] = p.Query
		us += "?" + p.Query
	}
	if p.Host != "" {
		u["hostname"] = p.Host
		us = "//" + p.Host + us
	}
	u["url_string"] = us
	req := map[string]any{"http_method": p.Method, "url": u, "uid": fmt.Sprint(p.QueryID)}
	var hs []map[string]any
	for _, h := range p.Headers {
		name, value, _ := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		hs = append(hs, map[string]any{"name": name, "value": value})
		switch strings.ToLower(name) {
		case "user-agent":
			req["user_agent"] = value
		case "referer":
			req["referrer"] = value
		case "x-forwarded-for":
			req["x_forwarded_for"] = strings.Split(strings.ReplaceAll(value, " ", ""), ",")
		}
	}
	if len(hs) > 0 {
		req["http_headers"] = hs
	}
	return req
}

// httpActivity is HTTP Activity's activity for a method.
func httpActivity(method string) (int, string) {
	switch strings.ToUpper(method) {
	case "CONNECT":
		return 1, "Connect"
	case "DELETE":
		return 2, "Delete"
	case "GET":
		return 3, "Get"
	case "HEAD":
		return 4, "Head"
	case "OPTIONS":
		return 5, "Options"
	case "POST":
		return 6, "Post"
	case "PUT":
		return 7, "Put"
	case "TRACE":
		return 8, "Trace"
	case "PATCH":
		return 99, "Patch"
	}
	return 99, method
}

// kubeActivity is API Activity's activity for a Kubernetes request and its name, and the
// operation: the verb (the lower-case method when the request info is missing).
func kubeActivity(p *schemas.HttpRequest) (int, string, string) {
	verb := strings.ToLower(p.Method)
	if p.Kube != nil && p.Kube.Verb != "" {
		verb = p.Kube.Verb
	}
	switch verb {
	case "create":
		return 1, "Create", verb
	case "get", "list", "watch":
		return 2, "Read", verb
	case "update", "patch":
		return 3, "Update", verb
	case "delete", "deletecollection":
		return 4, "Delete", verb
	}
	return 99, verb, verb
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
