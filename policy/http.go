// HTTP decisions: the CEL inputs of a request to an HTTP resource (request.http), the
// decision on it and its default denial. A request to the Kubernetes API is one too, with
// its kube part beside (kube.go).

package policy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// httpValues is request.http: every field present, empty when the request has none (the
// body null when it is absent or was not parsed).
func httpValues(h *schemas.HTTPRequest) map[string]any {
	query := make(map[string][]string, len(h.Query))
	for k, v := range h.Query {
		query[k] = nonNil(v)
	}
	params, headers := h.Params, h.Headers
	if params == nil {
		params = map[string]string{}
	}
	if headers == nil {
		headers = map[string]string{}
	}
	return map[string]any{
		"method": strings.ToUpper(h.Method), "host": h.Host, "path": h.Path, "segments": pathSegments(h.Path), "route": h.Route,
		"params": params, "query": query, "headers": headers, "content_type": h.ContentType,
		"body_bytes": h.BodyBytes, "body": jsonValue(h.Body), "body_unread": h.BodyUnread, "body_error": h.BodyError,
		"websocket": h.Websocket,
	}
}

// unnormalised says why a path is not one the proxy normalised, or "".
func unnormalised(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "it does not start with /"
	case strings.Contains(p, "//"):
		return "it has an empty segment"
	case strings.ContainsAny(p, "\x00?#"):
		return "it holds a NUL byte, a ? or a #"
	}
	for _, s := range strings.Split(p, "/") {
		if s == "." || s == ".." {
			return "it has a dot segment"
		}
	}
	return ""
}

// pathSegments are the segments of a normalised path: /customers/42 is ["customers", "42"].
func pathSegments(p string) []string {
	out := []string{}
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// jsonValue is a parsed JSON value as CEL takes it: numbers decoded with UseNumber become
// int (or uint) when they are integers, double otherwise, so that an identifier past 2^53
// compares exactly.
func jsonValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, _ := strconv.ParseFloat(string(x), 64) // ±Inf past the range
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}

// bodyMissing reports whether the request has a body that rules cannot read: JSON that was
// not parsed (too large, streamed, malformed), or a body of another type (which a backend
// may still read as JSON).
func bodyMissing(h *schemas.HTTPRequest) bool {
	return h.Body == nil && (h.BodyUnread || h.BodyBytes != 0)
}

// bodyState says, for a reason, why the body is not an input.
func bodyState(h *schemas.HTTPRequest) string {
	switch {
	case h.BodyError != "":
		return "the JSON body could not be parsed: " + clip(h.BodyError, maxAsked)
	case h.BodyBytes < 0:
		return "the body is streamed, of unknown length, and was not read"
	case h.BodyUnread:
		return fmt.Sprintf("the JSON body (%d bytes) is over what the gateway reads for a decision", h.BodyBytes)
	case h.ContentType != "":
		return fmt.Sprintf("the body (%d bytes) is %s, not JSON, and was not read", h.BodyBytes, plain(h.ContentType, 64))
	}
	return fmt.Sprintf("the body (%d bytes) has no content type and was not read", h.BodyBytes)
}

// decideHTTP decides a request to an HTTP resource or to the Kubernetes API. Such a
// decision is never cached: the proxy's cache key is a SQL statement's.
func (e *Engine) decideHTTP(req *Input, now time.Time) schemas.DecisionReply {
	h, k := req.HTTP, req.Kube
	d := schemas.DecisionReply{Revision: e.revision}
	if why := unnormalised(h.Path); why != "" {
		// The proxy normalises the path it decides and forwards; a path that is not would
		// be read one way here and perhaps another by the backend.
		d.Effect, d.Policy, d.Rule = schemas.EffectDeny, "gatehouse", "one-meaning"
		d.Reason = "the path " + plain(h.Path, maxAsked) + " is not normalised (" + why + "); refusing (fail closed)"
		return d
	}
	present, kind := readsHTTP, "http"
	request := map[string]any{"http": httpValues(h)}
	if k != nil {
		if k.Impersonate != "" {
			// The gateway refuses impersonation before it asks; should one come, the caller
			// would act as someone else.
			d.Effect, d.Policy, d.Rule = schemas.EffectDeny, "gatehouse", "impersonation"
			d.Reason = "the request asks to impersonate " + plain(k.Impersonate, 64) + "; callers act as themselves through the gateway (refusing, fail closed)"
			return d
		}
		line, info, refusal := kubeCommand(k)
		if refusal != "" {
			d.Effect, d.Policy, d.Rule, d.Reason = schemas.EffectDeny, "gatehouse", "command-depth", refusal
			return d
		}
		present, kind = readsHTTP|readsKube, "kube"
		request["kube"] = kubeValues(k, line, &info)
	}
	request["kind"] = kind
	request["agent"] = agentValues(req.Agent)
	vars := baseVars(req, now)
	vars["request"] = request
	missing := bodyMissing(h)
	enforced, all, shadowSeen := e.evaluate(req.Resource.Name, vars, evalOptions{
		use:  maskUse{fields: true},
		skip: func(r *rule) bool { return !r.reads.appliesTo(present) },
		// A require_approval rule on the body's content cannot be evaded by a body the
		// gateway does not read (too large, streamed, sent as text/plain).
		strict: func(r *rule) bool { return missing && r.readsBody && r.effect == schemas.EffectRequireApproval },
	})
	fill := func(m match, d *schemas.DecisionReply) {
		if m.best == nil {
			d.Effect, d.Reason = schemas.EffectDeny, httpDenial(h, k, req.Resource.Name)
			if missing && h.BodyUnread {
				d.Reason += " (" + bodyState(h) + ")"
			}
		} else {
			m.fill(d, nil, req.Resource.Name)
			if m.err != nil && missing && m.best.readsBody {
				d.Reason = fmt.Sprintf("rule %s/%s decides on the request's body, and %s; refusing (fail closed)", m.best.policy, m.best.name, bodyState(h))
			}
		}
		if k != nil {
			kubeAfter(&m, d, k, h.Path)
		}
	}
	fill(enforced, &d)
	if d.Allowed() {
		for _, g := range req.Grants {
			d.Grants = append(d.Grants, g.ID)
		}
	}
	if shadowSeen {
		var would schemas.DecisionReply
		fill(all, &would)
		if would.Effect != d.Effect || would.Rule != d.Rule || would.Policy != d.Policy {
			d.Shadow = &schemas.Shadow{Effect: would.Effect, Policy: would.Policy, Rule: would.Rule, Reason: would.Reason}
		}
	}
	return d
}

// httpDenial is the default denial: what was asked on which resource (DELETE /customers/42
// on orders-api; for the Kubernetes API, the verb and the object).
func httpDenial(h *schemas.HTTPRequest, k *schemas.KubeRequest, resource string) string {
	if k != nil {
		return "no rule allows " + kubeAsked(k, h.Path) + " on " + plain(resource, 64)
	}
	asked := plain(strings.ToUpper(h.Method), 32) + " " + plain(h.Path, maxAsked)
	if h.Websocket {
		asked += " (WebSocket)"
	}
	return "no rule allows " + asked + " on " + plain(resource, 64)
}

// plain is s for a message: as it is when it is printable and has no spaces or quotes,
// else quoted; cut at n bytes.
func plain(s string, n int) string {
	c := clip(s, n)
	q := strconv.Quote(c)
	if s == "" || q != `"`+c+`"` || strings.ContainsAny(c, " \t") {
		return q
	}
	return c
}
