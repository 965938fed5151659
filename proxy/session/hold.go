package session

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// Approvals connects sessions to the approvals component, over NATS only: requests and
// outcomes on GH_APPROVALS, and the claim request for fail-fast approvals. Without it,
// statements that need an approval are refused.
type Approvals struct {
	JS jetstream.JetStream
	NC *nats.Conn
	// Hint says where approvers decide, for the notice the waiting client gets.
	Hint string
	// Log hears of approval events that could not be published.
	Log *slog.Logger
}

// Hold is a request held for approval, as its protocol describes it.
type Hold struct {
	Query *Query
	// Statement is what approvers are shown (the protocol masks and bounds it); Hash
	// identifies the request as it would run (a fail-fast approval is used by the identical
	// one).
	Statement, Hash string
	// Notify tells the waiting client that it waits, and for what (each protocol its own
	// way: a NOTICE, a line on stderr, a header).
	Notify func(message, hint string)
	// Cancelled ends the wait with a reason: the client cancelled, or went away (a closed
	// channel: client_disconnected, for every hold waiting on it).
	Cancelled <-chan string
}

// Outcome is how a hold ended. Approved: the request may run. Otherwise End says why not,
// for the protocol to render: unavailable (no approvals, or they did not answer),
// requested (fail-fast: the approval is requested, the request is refused for now),
// pending (fail-fast: one is pending already), denied, expired, cancelled (by the
// approvals side), deadline (passed while the client waited), client_cancelled,
// shutdown.
type Outcome struct {
	Approved   bool
	End        string
	Message    string
	ApprovalID string
}

// maxHeldStatement bounds the statement shown to approvers.
const maxHeldStatement = 2000

// HoldFor settles a require_approval decision: the request is approved while the client
// waits (hold), or by a fail-fast approval of the identical request used now; every
// request, decision and end is recorded in the session's trail, tied to its query, and on
// GH_APPROVALS.
func (s *Session) HoldFor(ctx context.Context, ap *Approvals, h Hold) Outcome {
	q := h.Query
	spec := q.Decision.Approval
	if spec == nil || ap == nil {
		return Outcome{End: "unavailable", Message: "approval required, and this gateway has no approvals configured"}
	}
	if spec.Mode == "fail_fast" {
		b, _ := json.Marshal(schemas.ApprovalClaim{Subject: s.Identity.Subject, Resource: s.Resource.Name, StatementHash: h.Hash, SessionID: s.ID})
		m, err := ap.NC.Request(schemas.SubjectApprovalClaim, b, 5*time.Second)
		if err != nil {
			return Outcome{End: "unavailable", Message: "approval required, and the approvals service does not answer: " + err.Error()}
		}
		var reply schemas.ApprovalClaimReply
		_ = json.Unmarshal(m.Data, &reply)
		switch {
		case reply.Used != "":
			s.Record(&schemas.ApprovalUsed{ApprovalID: reply.Used, SessionID: s.ID, QueryID: q.ID,
				ApprovedBy: reply.ApprovedBy, RequestedAt: reply.RequestedAt, ApprovedAt: reply.ApprovedAt})
			return Outcome{Approved: true, ApprovalID: reply.Used}
		case reply.Pending != "":
			return Outcome{End: "pending", ApprovalID: reply.Pending,
				Message: fmt.Sprintf("approval %s is still pending; run the identical statement again once it is approved", reply.Pending)}
		}
	}

	id := bus.NewApprovalID()
	msgs := make(chan *nats.Msg, 64)
	sub, err := ap.NC.ChanSubscribe(bus.ApprovalSubject(id, ">"), msgs)
	if err != nil {
		return Outcome{End: "unavailable", Message: "approval required, and approvals are unavailable: " + err.Error()}
	}
	defer func() { _ = sub.Unsubscribe() }()
	text := h.Statement
	if len(text) > maxHeldStatement {
		text = truncateUTF8(text, maxHeldStatement) + " …"
	}
	var labels []string
	for k, v := range s.Resource.Labels {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	now := time.Now()
	req := &schemas.ApprovalRequested{ApprovalID: id, Kind: "statement", QueryID: q.ID, SessionID: s.ID, Statement: text,
		Fingerprint: q.Decision.Fingerprint, StatementHash: h.Hash, Labels: labels, Policy: q.Decision.Policy, Rule: q.Decision.Rule,
		Reason: q.Decision.Reason, Approvers: spec.Approvers, Required: uint32(spec.Required), Deadline: now.Add(spec.Timeout).UTC(),
		Mode: spec.Mode, WindowSeconds: uint64(spec.Window / time.Second)}
	e, err := bus.ApprovalEvent(schemas.TypeApprovalRequested, s.Identity.Identity, s.Resource.Name, req, now)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = bus.PublishApproval(pctx, ap.JS, id, e, "")
		cancel()
	}
	if err != nil {
		return Outcome{End: "unavailable", Message: "approval required, and the request could not be recorded: " + err.Error()}
	}
	s.Record(req)
	who := strings.Join(spec.Approvers, ", ")
	if spec.Mode == "fail_fast" {
		return Outcome{End: "requested", ApprovalID: id,
			Message: fmt.Sprintf("approval required; requested as %s (approvers: %s). Run the identical statement again within %s of its approval.", id, who, spec.Window)}
	}
	if h.Notify != nil {
		h.Notify(fmt.Sprintf("waiting for approval %s (policy %s, rule %s: %s); approvers: %s; deadline %s", id, q.Decision.Policy, q.Decision.Rule,
			q.Decision.Reason, who, req.Deadline.Format(time.RFC3339)), ap.Hint+" gatehouse approvals approve "+id)
	}

	state := &schemas.Approval{}
	_, _ = state.Apply(e)
	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	system := schemas.Identity{Subject: "gatehouse", Kind: "system"}
	for {
		select {
		case m := <-msgs:
			ev, err := bus.DecodeApprovalEvent(m.Data)
			if err != nil {
				continue
			}
			if changed, _ := state.Apply(ev); !changed {
				continue
			}
			// Every outcome goes into the session's trail, tied to its request: a decision,
			// and an expiry or cancellation recorded elsewhere first (the approvals service
			// expires at the deadline too).
			switch ev.Type {
			case schemas.TypeApprovalDecided:
				var d schemas.ApprovalDecided
				if ev.Decode(&d) == nil {
					d.QueryID = q.ID
					s.Record(&d)
				}
			case schemas.TypeApprovalExpired:
				var x schemas.ApprovalExpired
				if ev.Decode(&x) == nil {
					x.QueryID = q.ID
					s.Record(&x)
				}
			case schemas.TypeApprovalCancelled:
				var x schemas.ApprovalCancelled
				if ev.Decode(&x) == nil {
					x.QueryID = q.ID
					s.Record(&x)
				}
			}
			switch state.Status {
			case schemas.ApprovalStatusApproved:
				if h.Notify != nil {
					// The client learns why its statement runs now (and an MCP server
					// starts the statement's own time bound here).
					h.Notify(fmt.Sprintf("approval %s granted; the statement runs now", id), "")
				}
				return Outcome{Approved: true, ApprovalID: id}
			case schemas.ApprovalStatusDenied:
				return Outcome{End: "denied", ApprovalID: id, Message: fmt.Sprintf("approval %s denied by %s: %s", id, state.Denial.By, state.Denial.Reason)}
			case schemas.ApprovalStatusExpired, schemas.ApprovalStatusCancelled:
				return Outcome{End: state.Status, ApprovalID: id, Message: fmt.Sprintf("approval %s was %s; the statement was not run", id, state.Status)}
			}
		case <-timer.C:
			ex := &schemas.ApprovalExpired{ApprovalID: id, QueryID: q.ID, Deadline: req.Deadline}
			s.publishApproval(ctx, ap, id, schemas.TypeApprovalExpired, system, ex, id+".expired")
			return Outcome{End: "deadline", ApprovalID: id,
				Message: fmt.Sprintf("approval %s was not granted before its deadline (%s); the statement was not run", id, req.Deadline.Format(time.RFC3339))}
		case why := <-h.Cancelled:
			if why == "" { // closed: every hold of the client's gives up
				why = "client_disconnected"
			}
			cx := &schemas.ApprovalCancelled{ApprovalID: id, QueryID: q.ID, Reason: why}
			s.publishApproval(ctx, ap, id, schemas.TypeApprovalCancelled, s.Identity.Identity, cx, id+".cancelled")
			return Outcome{End: "client_cancelled", ApprovalID: id, Message: "approval " + id + " cancelled; the statement was not run"}
		case <-ctx.Done():
			return Outcome{End: "shutdown", ApprovalID: id, Message: "Gatehouse is shutting down"}
		}
	}
}

// publishApproval records an approval event on GH_APPROVALS and in the session's trail.
func (s *Session) publishApproval(ctx context.Context, ap *Approvals, id, typ string, actor schemas.Identity, p schemas.Payload, msgID string) {
	s.Record(p)
	e, err := bus.ApprovalEvent(typ, actor, s.Resource.Name, p, time.Now())
	if err == nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = bus.PublishApproval(pctx, ap.JS, id, e, msgID)
		cancel()
	}
	if err != nil && ap.Log != nil {
		ap.Log.Warn("approval event not published", "approval", id, "type", typ, "err", err)
	}
}
