package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
)

// ApprovalSubject is where an approval's event goes on GH_APPROVALS.
func ApprovalSubject(approvalID, typ string) string {
	return SubjectApprovals + "." + approvalID + "." + typ
}

// ApprovalEvent builds an event for GH_APPROVALS: the envelope without a session chain
// (approvals have several writers), identity the actor.
func ApprovalEvent(typ string, actor schemas.Identity, resource string, p schemas.Payload, now time.Time) (*schemas.Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return &schemas.Event{ID: id.String(), Type: typ, Code: schemas.Codes[typ], Time: now.UTC().Truncate(time.Microsecond),
		Identity: actor, Resource: resource, Payload: p.AppendJSON(nil)}, nil
}

// NewApprovalID returns a new approval id (UUIDv7).
func NewApprovalID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// PublishApproval writes an approval event to GH_APPROVALS. msgID deduplicates (a vote's
// is the approval, the approver and the decision, so a click that arrives twice is stored
// once); "" is the event's id.
func PublishApproval(ctx context.Context, js jetstream.JetStream, approvalID string, e *schemas.Event, msgID string) error {
	if msgID == "" {
		msgID = e.ID
	}
	if _, err := js.Publish(ctx, ApprovalSubject(approvalID, e.Type), e.AppendJSON(nil), jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %s of approval %s: %w", e.Type, approvalID, err)
	}
	return nil
}

// DecodeApprovalEvent reads an event from a GH_APPROVALS message.
func DecodeApprovalEvent(data []byte) (*schemas.Event, error) {
	var e schemas.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
