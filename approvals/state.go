// Package approvals is just-in-time approval: a statement (or a grant) that a rule says
// needs approval is requested on GH_APPROVALS, approvers approve or deny it (CLI, API or
// Slack), and the state of every approval is rebuilt from that stream: it is
// event-sourced, so a restart loses nothing and a click that arrives twice counts once.
package approvals

import (
	"time"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// The state of an approval is the contract's (schemas.Approval): the notifier and other
// clients fold the same events.
type (
	Approval = schemas.Approval
	Vote     = schemas.Vote
)

// Status of an approval.
const (
	Pending   = schemas.ApprovalStatusPending
	Approved  = schemas.ApprovalStatusApproved
	Denied    = schemas.ApprovalStatusDenied
	Expired   = schemas.ApprovalStatusExpired
	Cancelled = schemas.ApprovalStatusCancelled
)

// Event builds an event for GH_APPROVALS (bus.ApprovalEvent).
func Event(typ string, actor schemas.Identity, resource string, p schemas.Payload, now time.Time) (*schemas.Event, error) {
	return bus.ApprovalEvent(typ, actor, resource, p, now)
}

// NewID returns a new approval id.
func NewID() string { return bus.NewApprovalID() }

// Subject is where an approval's event goes.
func Subject(approvalID, typ string) string { return bus.ApprovalSubject(approvalID, typ) }

// Decode reads an event from a GH_APPROVALS message.
func Decode(data []byte) (*schemas.Event, error) { return bus.DecodeApprovalEvent(data) }
