package query

import (
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// SessionHead is what a session's trail says of the session itself: whose, where, its
// start and end. SSH and HTTP replays both fill it (apply).
type SessionHead struct {
	ID       string
	Identity schemas.Identity
	Resource string
	Start    *schemas.SessionStart // nil: the trail has no session.start
	Started  time.Time
	End      *schemas.SessionEnd // nil: open, or cut
	Ended    time.Time
	// Terminated is why the gateway ended the session, if it did.
	Terminated *schemas.SessionTerminated
}

// apply records e in the head when it is the session's first event, its start, end or
// termination; it says whether e was one of the last three.
func (h *SessionHead) apply(e *schemas.Event) bool {
	if h.ID == "" {
		h.ID, h.Identity, h.Resource = e.SessionID, e.Identity, e.Resource
	}
	switch e.Type {
	case schemas.TypeSessionStart:
		var p schemas.SessionStart
		if e.Decode(&p) == nil {
			h.Start, h.Started, h.Identity = &p, e.Time, e.Identity
		}
	case schemas.TypeSessionEnd:
		var p schemas.SessionEnd
		if e.Decode(&p) == nil {
			h.End, h.Ended = &p, e.Time
		}
	case schemas.TypeSessionTerminated:
		var p schemas.SessionTerminated
		if e.Decode(&p) == nil {
			h.Terminated = &p
		}
	default:
		return false
	}
	return true
}

// Verdict is what a session's trail says became of one request (an SSH request, an HTTP
// request): its decision and, when it was held, its approval. SSH and HTTP replays both
// fill it from the decision and approval events (applyVerdict).
type Verdict struct {
	Decision *schemas.Decision // nil: none recorded
	// Approval is its approval, if one was requested or used; Approvers who approved it.
	Approval  string
	Approvers []string
	// DeniedBy and DenialReason: an approver who denied it, and why.
	DeniedBy, DenialReason string
	// Outcome is named as the evidence reports name it (allowed, masked, denied, approved,
	// approval_denied, approval_expired, approval_cancelled, approval_pending,
	// held_no_outcome, no_decision).
	Outcome string

	approved, denied, expired, cancelled, requested bool
}

// applyVerdict records a decision or approval event in the verdict of the request it names
// (of looks it up by query id; a request not in the trail gets a verdict kept nowhere). It
// says whether e was one of those events.
func applyVerdict(e *schemas.Event, of func(queryID uint64) *Verdict) bool {
	switch e.Type {
	case schemas.TypeDecision:
		var p schemas.Decision
		if e.Decode(&p) == nil {
			of(p.QueryID).Decision = &p
		}
	case schemas.TypeApprovalRequested:
		var p schemas.ApprovalRequested
		if e.Decode(&p) == nil && p.QueryID != 0 {
			r := of(p.QueryID)
			r.requested, r.Approval = true, p.ApprovalID
		}
	case schemas.TypeApprovalDecided:
		var p schemas.ApprovalDecided
		if e.Decode(&p) == nil && p.QueryID != 0 {
			r := of(p.QueryID)
			if p.Decision == "approve" && p.By != "" && !slices.Contains(r.Approvers, p.By) {
				r.Approvers = append(r.Approvers, p.By)
			}
			switch p.Outcome {
			case "approved":
				r.approved = true
			case "denied":
				r.denied, r.DeniedBy, r.DenialReason = true, p.By, p.Reason
			}
		}
	case schemas.TypeApprovalExpired:
		var p schemas.ApprovalExpired
		if e.Decode(&p) == nil && p.QueryID != 0 {
			of(p.QueryID).expired = true
		}
	case schemas.TypeApprovalCancelled:
		var p schemas.ApprovalCancelled
		if e.Decode(&p) == nil && p.QueryID != 0 {
			of(p.QueryID).cancelled = true
		}
	case schemas.TypeApprovalUsed:
		var p schemas.ApprovalUsed
		if e.Decode(&p) == nil && p.QueryID != 0 {
			r := of(p.QueryID)
			r.approved, r.Approval = true, p.ApprovalID
			for _, a := range p.ApprovedBy {
				if !slices.Contains(r.Approvers, a) {
					r.Approvers = append(r.Approvers, a)
				}
			}
		}
	default:
		return false
	}
	return true
}

// outcome names what happened to a request as the evidence reports do (evidence_sql.go).
func outcome(r *Verdict) string {
	if r.Decision == nil {
		return "no_decision"
	}
	switch r.Decision.Effect {
	case "allow":
		return "allowed"
	case "mask":
		return "masked"
	case "deny":
		return "denied"
	case "require_approval":
	default:
		return "no_decision"
	}
	switch {
	case r.approved:
		return "approved"
	case r.denied:
		return "approval_denied"
	case r.expired:
		return "approval_expired"
	case r.cancelled:
		return "approval_cancelled"
	case r.requested:
		return "approval_pending"
	}
	return "held_no_outcome"
}
