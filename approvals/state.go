// Package approvals is just-in-time approval: a statement (or a grant) that a rule says
// needs approval is requested on GH_APPROVALS, approvers approve or deny it (CLI, API or
// Slack), and the state of every approval is rebuilt from that stream: it is
// event-sourced, so a restart loses nothing and a click that arrives twice counts once.
package approvals

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

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
