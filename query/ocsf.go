package query

import (
	"encoding/json"
	"strings"

	"github.com/gatehouse/gatehouse/schemas"
)

// OCSF 1.x classes the export maps events to.
const (
	ocsfDetectionFinding  = 2004
	ocsfAuthentication    = 3002
	ocsfAuthorizeSession  = 3003
	ocsfUserAccessMgmt    = 3005
	ocsfDatastoreActivity = 6005
	ocsfAPIActivity       = 6003
	ocsfSSHActivity       = 4007
	// ocsfHTTPActivity (4002) is in ocsf_http.go.
)

// OCSF maps an event to an OCSF 1.x record: the class for its kind (Datastore Activity for
// statements and results, Authentication for session starts, ends and refusals, Authorize
// Session for decisions, User Access Management for grants and revocations, Detection
// Finding for blocked statements, API Activity for everything else), with the actor, the
// resource, the time, and the native event under unmapped. The events of SSH sessions map
// to SSH Activity (ocsfSSH), the requests of HTTP sessions to HTTP Activity and those of
// Kubernetes sessions to API Activity (ocsfHTTP); OCSF tells them by their type or their
// payload, and OCSFProtocol those (decisions, session ends, a Kubernetes session's
// responses) that need the session's protocol.
func OCSF(e *schemas.Event) map[string]any { return OCSFProtocol(e, "") }

// OCSFProtocol is OCSF for an event of a session of a known protocol (postgres, ssh, http
// or kubernetes; ""
// when unknown: the event's type and payload decide).
func OCSFProtocol(e *schemas.Event, protocol string) map[string]any {
	var payload map[string]any
	_ = json.Unmarshal(e.Payload, &payload)
	switch eventProtocol(e.Type, payload, protocol) {
	case "ssh":
		if rec := ocsfSSH(e, payload); rec != nil {
			return rec
		}
	case "http", "kubernetes":
		if rec := ocsfHTTP(e, payload, eventProtocol(e.Type, payload, protocol) == "kubernetes"); rec != nil {
			return rec
		}
	}
	class, activity, name := ocsfAPIActivity, 99, "Other"
	status := 1 // success
	switch e.Type {
	case schemas.TypeDbQuery, schemas.TypeDbBind, schemas.TypeDbResultChunk, schemas.TypeDbQueryDone:
		class, activity, name = ocsfDatastoreActivity, 2, "Query"
		if e.Type == schemas.TypeDbResultChunk {
			activity, name = 1, "Read"
		}
		if s, _ := payload["status"].(string); s == "error" || s == "denied" {
			status = 2
		}
	case schemas.TypeSessionStart:
		class, activity, name = ocsfAuthentication, 1, "Logon"
	case schemas.TypeSessionEnd, schemas.TypeSessionTerminated:
		class, activity, name = ocsfAuthentication, 2, "Logoff"
	case schemas.TypeAuthFailed:
		class, activity, name, status = ocsfAuthentication, 1, "Logon", 2
	case schemas.TypeDecision:
		class, activity, name = ocsfAuthorizeSession, 2, "Assign Privileges"
		if eff, _ := payload["effect"].(string); eff == "deny" || eff == "require_approval" {
			class, activity, name, status = ocsfDetectionFinding, 1, "Create", 2
		}
	case schemas.TypeGrantCreated:
		class, activity, name = ocsfUserAccessMgmt, 1, "Assign Privileges"
	case schemas.TypeGrantExpired, schemas.TypeGrantRevoked, schemas.TypeRevocation:
		class, activity, name = ocsfUserAccessMgmt, 2, "Revoke Privileges"
	case schemas.TypeMcpCall, schemas.TypeMcpResult:
		// An agent's tool call (API Activity); what its statement did is the resource's
		// own session's (Datastore Activity, Detection Finding).
		switch str(payload["status"]) {
		case "", "ok", "limited", "pending_approval":
		default:
			status = 2
		}
	}
	rec := ocsfBase(e, payload, class, activity, name, status)
	if e.Type == schemas.TypeMcpCall || e.Type == schemas.TypeMcpResult {
		api := map[string]any{"operation": "tools/call", "service": map[string]any{"name": "Gatehouse MCP"}}
		if tool := str(payload["tool"]); tool != "" {
			api["operation"] = "tools/call " + tool
		}
		rec["api"] = api
		if msg := str(payload["message"]); status == 2 && msg != "" {
			rec["status_detail"] = msg
		}
	}
	if class == ocsfDatastoreActivity || class == ocsfDetectionFinding {
		rec["database"] = map[string]any{"name": e.Resource, "type": "PostgreSQL"}
		if sql, _ := payload["sql"].(string); sql != "" {
			rec["query_info"] = map[string]any{"query_string": sql}
		}
	}
	if class == ocsfDetectionFinding {
		rec["finding_info"] = map[string]any{"uid": e.ID, "title": "Statement blocked by policy",
			"desc": strings.TrimSpace(str(payload["reason"])), "analytic": map[string]any{"name": str(payload["rule"]), "type_id": 1}}
	}
	return rec
}

// ocsfBase is what every record has: the class and activity, the status, the time, the
// actor and session, and the native event under unmapped.
func ocsfBase(e *schemas.Event, payload map[string]any, class, activity int, name string, status int) map[string]any {
	category := class / 1000
	rec := map[string]any{
		"metadata": map[string]any{"version": "1.1.0", "uid": e.ID, "product": map[string]any{"name": "Gatehouse", "vendor_name": "Gatehouse"},
			"log_name": e.Type, "correlation_uid": e.SessionID, "sequence": e.Seq},
		"class_uid": class, "category_uid": category, "activity_id": activity, "activity_name": name,
		"type_uid": class*100 + activity, "severity_id": 1, "status_id": status,
		"time": e.Time.UnixMilli(),
		"actor": map[string]any{"user": map[string]any{"name": actorName(&e.Identity), "uid": e.Identity.Subject,
			"type": e.Identity.Kind, "groups": groups(e.Identity.Groups)}, "session": map[string]any{"uid": e.SessionID}},
		"unmapped": map[string]any{"gatehouse": map[string]any{"type": e.Type, "code": e.Code, "resource": e.Resource,
			"policy_revision": e.PolicyRevision, "hash": e.Hash, "prev_hash": e.PrevHash, "payload": payload}},
	}
	if e.Identity.OnBehalfOf != "" {
		rec["actor"].(map[string]any)["invoked_by"] = e.Identity.OnBehalfOf
	}
	return rec
}

func groups(gs []string) []map[string]string {
	out := make([]map[string]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, map[string]string{"name": g})
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// actorName is the OCSF user name: the caller's readable name, else the token subject
// (which is the user's uid either way).
func actorName(id *schemas.Identity) string {
	if id.Name != "" {
		return id.Name
	}
	return id.Subject
}
