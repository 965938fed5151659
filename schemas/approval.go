package schemas

// The state of an approval, folded from its events on GH_APPROVALS: the approvals
// component keeps it, and the notifier and any other client rebuild it from the same
// stream, so that they meet only over NATS.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status of an approval.
const (
	ApprovalStatusPending   = "pending"
	ApprovalStatusApproved  = "approved"
	ApprovalStatusDenied    = "denied"
	ApprovalStatusExpired   = "expired"
	ApprovalStatusCancelled = "cancelled"
)

// Approval is the state of one approval, folded from its events.
type Approval struct {
	ID        string            `json:"id"`
	Requester Identity          `json:"requester"`
	Resource  string            `json:"resource"`
	Request   ApprovalRequested `json:"request"`
	Requested time.Time         `json:"requested_at"`
	Status    string            `json:"status"`
	Approvals []Vote            `json:"approvals,omitempty"` // distinct approvers who approved
	Denial    *Vote             `json:"denial,omitempty"`
	DecidedAt time.Time         `json:"decided_at,omitempty"`
	Used      bool              `json:"used,omitempty"`
	Granted   bool              `json:"granted,omitempty"`       // grant: stored in gh_grants
	Closed    string            `json:"closed_reason,omitempty"` // cancelled: why
	seen      map[string]bool   // approver+decision already counted
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
func (a *Approval) Apply(e *Event) (bool, error) {
	switch e.Type {
	case TypeApprovalRequested:
		if a.Status != "" {
			return false, nil
		}
		var p ApprovalRequested
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		a.ID, a.Requester, a.Resource, a.Request, a.Requested, a.Status = p.ApprovalID, e.Identity, e.Resource, p, e.Time, ApprovalStatusPending
		a.seen = map[string]bool{}
		return true, nil
	case TypeApprovalDecided:
		var p ApprovalDecided
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		if a.Status != ApprovalStatusPending || a.seen[e.Identity.Subject+"\x00"+p.Decision] {
			return false, nil
		}
		a.seen[e.Identity.Subject+"\x00"+p.Decision] = true
		v := Vote{By: e.Identity.Subject, Via: p.Via, Reason: p.Reason, At: e.Time}
		switch p.Decision {
		case "deny":
			a.Status, a.Denial, a.DecidedAt = ApprovalStatusDenied, &v, e.Time
		case "approve":
			a.Approvals = append(a.Approvals, v)
			if len(a.Approvals) >= int(max(a.Request.Required, 1)) {
				a.Status, a.DecidedAt = ApprovalStatusApproved, e.Time
			}
		default:
			return false, fmt.Errorf("approval %s: unknown decision %q", a.ID, p.Decision)
		}
		return true, nil
	case TypeApprovalExpired:
		if a.Status == ApprovalStatusPending || (a.Status == ApprovalStatusApproved && a.Request.Mode == "fail_fast" && !a.Used) {
			a.Status, a.DecidedAt = ApprovalStatusExpired, e.Time
			return true, nil
		}
	case TypeApprovalCancelled:
		if a.Status == ApprovalStatusPending {
			var p ApprovalCancelled
			_ = e.Decode(&p)
			a.Status, a.Closed, a.DecidedAt = ApprovalStatusCancelled, p.Reason, e.Time
			return true, nil
		}
	case TypeGrantCreated:
		if a.Status == ApprovalStatusApproved && !a.Granted {
			a.Granted = true
			return true, nil
		}
	case TypeApprovalUsed:
		if a.Status == ApprovalStatusApproved && !a.Used {
			a.Used = true
			return true, nil
		}
	}
	return false, nil
}

// Snapshot is a copy of the approval that shares nothing with it (to hand out while the
// original goes on folding events).
func (a *Approval) Snapshot() Approval {
	c := *a
	c.seen = nil
	c.Approvals = slices.Clone(a.Approvals)
	if a.Denial != nil {
		d := *a.Denial
		c.Denial = &d
	}
	return c
}

// Counted says whether who's decision (approve or deny) was counted already.
func (a *Approval) Counted(who, decision string) bool { return a.seen[who+"\x00"+decision] }

// ApprovedBy lists who approved.
func (a *Approval) ApprovedBy() []string {
	var out []string
	for _, v := range a.Approvals {
		out = append(out, v.By)
	}
	return out
}

// CanDecide says why who may not decide this approval ("" when they may).
func (a *Approval) CanDecide(who Identity) string {
	switch {
	case a.Status != ApprovalStatusPending:
		return fmt.Sprintf("approval %s is %s", a.ID, a.Status)
	case who.Subject == a.Requester.Subject || (a.Requester.OnBehalfOf != "" && who.Subject == a.Requester.OnBehalfOf):
		return "the requester cannot approve their own request"
	case !slices.ContainsFunc(who.Groups, func(g string) bool { return slices.Contains(a.Request.Approvers, g) }):
		return fmt.Sprintf("%s is not in an approver group of this request (%v)", who.Subject, a.Request.Approvers)
	}
	return ""
}

// Printable is a statement as approvers are shown it: control characters (a carriage
// return that makes a terminal print later text over earlier) and invisible or
// direction-changing characters (Trojan Source: text that reads otherwise than it runs)
// written as escapes, so that what an approver reads is what runs. Newlines and tabs stay.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if hidden(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r':
			b.WriteString(`\r`)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func hidden(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x061c, r == 0xfeff, r == 0x00ad:
		return true
	}
	return false
}
