package http

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// problem is an RFC 9457 problem document: how the gateway answers what it refuses.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Extensions.
	Session    string `json:"session_id,omitempty"`
	Request    uint64 `json:"request,omitempty"`
	Rule       string `json:"rule,omitempty"`
	ApprovalID string `json:"approval_id,omitempty"`
}

// problemTypes name the kinds of refusal (the type member, a URI reference).
const (
	probDenied   = "urn:gatehouse:problem:denied"
	probApproval = "urn:gatehouse:problem:approval"
	probAuth     = "urn:gatehouse:problem:unauthenticated"
	probRequest  = "urn:gatehouse:problem:bad-request"
	probRoute    = "urn:gatehouse:problem:no-resource"
	probUpstream = "urn:gatehouse:problem:upstream"
	probAudit    = "urn:gatehouse:problem:audit"
)

// writeProblem answers with p.
func writeProblem(w http.ResponseWriter, p problem) []byte {
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	b, _ := json.Marshal(p)
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Server", "gatehouse")
	w.WriteHeader(p.Status)
	_, _ = w.Write(b)
	return b
}
