// Package approvals is just-in-time approval: a statement (or a grant) that a rule says
// needs approval is requested on GH_APPROVALS, approvers approve or deny it (CLI, API or
// Slack), and the state of every approval is rebuilt from that stream: it is
// event-sourced, so a restart loses nothing and a click that arrives twice counts once.
package approvals

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// Status of an approval.
const (
	Pending   = "pending"
	Approved  = "approved"
	Denied    = "denied"
	Expired   = "expired"
	Cancelled = "cancelled"
)

// Approval is the state of one approval, folded from its events.
type Approval struct {
	ID        string                    `json:"id"`
	Requester schemas.Identity          `json:"requester"`
	Resource  string                    `json:"resource"`
	Request   schemas.ApprovalRequested `json:"request"`
	Requested time.Time                 `json:"requested_at"`
	Status    string                    `json:"status"`
	Approvals []Vote                    `json:"approvals,omitempty"` // distinct approvers who approved
	Denial    *Vote                     `json:"denial,omitempty"`
	DecidedAt time.Time                 `json:"decided_at,omitempty"`
	Used      bool                      `json:"used,omitempty"`
	Granted   bool                      `json:"granted,omitempty"`       // grant: stored in gh_grants
	Closed    string                    `json:"closed_reason,omitempty"` // cancelled: why
	seen      map[string]bool           // approver+decision already counted
}

// Vote is one approver's decision.
type Vote struct {
	By     string    `json:"by"`
	Via    string    `json:"via"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Apply folds one event into the approval. Events after the approval is closed, and a
// repeated decision by the same approver, change nothing. It reports whether the event
// changed the state.
func (a *Approval) Apply(e *schemas.Event) (bool, error) {
	switch e.Type {
	case schemas.TypeApprovalRequested:
		if a.Status != "" {
			return false, nil
		}
		var p schemas.ApprovalRequested
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		a.ID, a.Requester, a.Resource, a.Request, a.Requested, a.Status = p.ApprovalID, e.Identity, e.Resource, p, e.Time, Pending
		a.seen = map[string]bool{}
		return true, nil
	case schemas.TypeApprovalDecided:
		var p schemas.ApprovalDecided
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		if a.Status != Pending || a.seen[e.Identity.Subject+"\x00"+p.Decision] {
			return false, nil
		}
		a.seen[e.Identity.Subject+"\x00"+p.Decision] = true
		v := Vote{By: e.Identity.Subject, Via: p.Via, Reason: p.Reason, At: e.Time}
		switch p.Decision {
		case "deny":
			a.Status, a.Denial, a.DecidedAt = Denied, &v, e.Time
		case "approve":
			a.Approvals = append(a.Approvals, v)
			if len(a.Approvals) >= int(max(a.Request.Required, 1)) {
				a.Status, a.DecidedAt = Approved, e.Time
			}
		default:
			return false, fmt.Errorf("approval %s: unknown decision %q", a.ID, p.Decision)
		}
		return true, nil
	case schemas.TypeApprovalExpired:
		if a.Status == Pending || (a.Status == Approved && a.Request.Mode == "fail_fast" && !a.Used) {
			a.Status, a.DecidedAt = Expired, e.Time
			return true, nil
		}
	case schemas.TypeApprovalCancelled:
		if a.Status == Pending {
			var p schemas.ApprovalCancelled
			_ = e.Decode(&p)
			a.Status, a.Closed, a.DecidedAt = Cancelled, p.Reason, e.Time
			return true, nil
		}
	case schemas.TypeGrantCreated:
		if a.Status == Approved && !a.Granted {
			a.Granted = true
			return true, nil
		}
	case schemas.TypeApprovalUsed:
		if a.Status == Approved && !a.Used {
			a.Used = true
			return true, nil
		}
	}
	return false, nil
}

// ApprovedBy lists who approved.
func (a *Approval) ApprovedBy() []string {
	var out []string
	for _, v := range a.Approvals {
		out = append(out, v.By)
	}
	return out
}

// CanDecide says why who may not decide this approval ("" when they may).
func (a *Approval) CanDecide(who schemas.Identity) string {
	switch {
	case a.Status != Pending:
		return fmt.Sprintf("approval %s is %s", a.ID, a.Status)
	case who.Subject == a.Requester.Subject || (a.Requester.OnBehalfOf != "" && who.Subject == a.Requester.OnBehalfOf):
		return "the requester cannot approve their own request"
	case !slices.ContainsFunc(who.Groups, func(g string) bool { return slices.Contains(a.Request.Approvers, g) }):
		return fmt.Sprintf("%s is not in an approver group of this request (%v)", who.Subject, a.Request.Approvers)
	}
	return ""
}

// Event builds an event for GH_APPROVALS: the envelope without a session chain (approvals
// have several writers), identity the actor.
func Event(typ string, actor schemas.Identity, resource string, p schemas.Payload, now time.Time) (*schemas.Event, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	return &schemas.Event{ID: id, Type: typ, Code: schemas.Codes[typ], Time: now.UTC().Truncate(time.Microsecond),
		Identity: actor, Resource: resource, Payload: p.AppendJSON(nil)}, nil
}

func newID() (string, error) {
	u, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// NewID returns a new approval id.
func NewID() string {
	id, err := newID()
	if err != nil {
		return uuid.NewString()
	}
	return id
}

// Subject is where an approval's event goes.
func Subject(approvalID, typ string) string {
	return bus.SubjectApprovals + "." + approvalID + "." + typ
}

// Decode reads an event from a GH_APPROVALS message.
func Decode(data []byte) (*schemas.Event, error) {
	var e schemas.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
