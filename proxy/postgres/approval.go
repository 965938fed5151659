package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

// Approvals connects the proxy to the approvals system: GH_APPROVALS for requests and
// outcomes, and the claim request for fail-fast approvals. Without it, statements that need
// an approval are refused.
type Approvals struct {
	JS jetstream.JetStream
	NC *nats.Conn
	// Where approvers decide, for the notice the waiting client gets.
	Hint string
}

// refusal is why a statement waiting for approval does not run.
type refusal struct {
	code, msg, detail, hint string
	position                int32 // the error's position field (a syntax error), 0: none
}

func (r *refusal) response() []byte {
	e := pgError("ERROR", r.code, r.msg, r.hint)
	e.Detail, e.Position = r.detail, r.position
	return encode(e)
}

// maxApprovalSQL bounds the statement shown to approvers.
const maxApprovalSQL = 2000

// approve settles a require_approval decision: nil when the statement may run (approved
// while the client waited, or a fail-fast approval of the identical statement was used),
// otherwise why not.
func (c *conn) approve(ctx context.Context, q *session.Query, sql string) *refusal {
	spec := q.Decision.Approval
	ap := c.srv.approvals
	if spec == nil || ap == nil {
		return denial(q)
	}
	sum := sha256.Sum256([]byte(sql))
	hash := hex.EncodeToString(sum[:])
	if spec.Mode == "fail_fast" {
		b, _ := json.Marshal(approvals.ClaimRequest{Subject: c.st.identity.Subject, Resource: c.st.resource.Name, StatementHash: hash, SessionID: c.sess.ID})
		m, err := ap.NC.Request(approvals.SubjectClaim, b, 5*time.Second)
		if err != nil {
			return &refusal{code: "42501", msg: "Gatehouse: approval required, and the approvals service does not answer: " + err.Error()}
		}
		var reply approvals.ClaimReply
		_ = json.Unmarshal(m.Data, &reply)
		switch {
		case reply.Used != "":
			c.sess.Record(&schemas.ApprovalUsed{ApprovalID: reply.Used, SessionID: c.sess.ID, QueryID: q.ID,
				ApprovedBy: reply.ApprovedBy, RequestedAt: reply.RequestedAt, ApprovedAt: reply.ApprovedAt})
			return nil
		case reply.Pending != "":
			return &refusal{code: "42501", msg: fmt.Sprintf("Gatehouse: approval %s is still pending; run the identical statement again once it is approved", reply.Pending)}
		}
	}

	// From here on a cancel request or a disconnect ends the wait (even before the request
	// is out: the client may cancel as soon as it sent the statement).
	cancelled := make(chan string, 2)
	c.cancelKey.setHold(func() {
		select {
		case cancelled <- "cancel_request":
		default:
		}
	})
	defer c.cancelKey.setHold(nil)
	if spec.Mode != "fail_fast" {
		stop := c.watchDisconnect(cancelled)
		defer stop()
	}

	id := approvals.NewID()
	msgs := make(chan *nats.Msg, 64)
	sub, err := ap.NC.ChanSubscribe(approvals.Subject(id, ">"), msgs)
	if err != nil {
		return &refusal{code: "42501", msg: "Gatehouse: approval required, and approvals are unavailable: " + err.Error()}
	}
	defer func() { _ = sub.Unsubscribe() }()
	text := sql
	if len(text) > maxApprovalSQL {
		text = truncate(text, maxApprovalSQL) + " …"
	}
	if rm, err := c.srv.masks.Get(defaultDetectors); err == nil {
		b, _ := rm.Detect([]byte(text))
		text = string(b)
	}
	labels := labelList(c.st.resource.Labels)
	now := time.Now()
	req := &schemas.ApprovalRequested{ApprovalID: id, Kind: "statement", QueryID: q.ID, SessionID: c.sess.ID, Statement: text,
		Fingerprint: q.Decision.Fingerprint, StatementHash: hash, Labels: labels, Policy: q.Decision.Policy, Rule: q.Decision.Rule,
		Reason: q.Decision.Reason, Approvers: spec.Approvers, Required: uint32(spec.Required), Deadline: now.Add(spec.Timeout).UTC(),
		Mode: spec.Mode, WindowSeconds: uint64(spec.Window / time.Second)}
	e, err := approvals.Event(schemas.TypeApprovalRequested, c.st.identity.Identity, c.st.resource.Name, req, now)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = approvals.Publish(pctx, ap.JS, id, e, "")
		cancel()
	}
	if err != nil {
		return &refusal{code: "42501", msg: "Gatehouse: approval required, and the request could not be recorded: " + err.Error()}
	}
	c.sess.Record(req)
	who := strings.Join(spec.Approvers, ", ")
	if spec.Mode == "fail_fast" {
		return &refusal{code: "42501", msg: fmt.Sprintf("Gatehouse: approval required; requested as %s (approvers: %s). Run the identical statement again within %s of its approval.", id, who, spec.Window),
			detail: "approval " + id}
	}

	notice := &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
		Message: fmt.Sprintf("Gatehouse: waiting for approval %s (policy %s, rule %s: %s); approvers: %s; deadline %s", id, q.Decision.Policy, q.Decision.Rule, q.Decision.Reason, who, req.Deadline.Format(time.RFC3339)),
		Hint:    ap.Hint + " gatehouse approvals approve " + id}
	c.writeClient(encode(notice), true)

	state := &approvals.Approval{}
	_, _ = state.Apply(e)
	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	system := schemas.Identity{Subject: "gatehouse", Kind: "system"}
	for {
		select {
		case m := <-msgs:
			ev, err := approvals.Decode(m.Data)
			if err != nil {
				continue
			}
			if changed, _ := state.Apply(ev); !changed {
				continue
			}
			// Every outcome goes into the session's trail, tied to its statement: a decision,
			// and an expiry or cancellation recorded elsewhere first (the approvals service
			// expires at the deadline too).
			switch ev.Type {
			case schemas.TypeApprovalDecided:
				var d schemas.ApprovalDecided
				if ev.Decode(&d) == nil {
					d.QueryID = q.ID
					c.sess.Record(&d)
				}
			case schemas.TypeApprovalExpired:
				var x schemas.ApprovalExpired
				if ev.Decode(&x) == nil {
					x.QueryID = q.ID
					c.sess.Record(&x)
				}
			case schemas.TypeApprovalCancelled:
				var x schemas.ApprovalCancelled
				if ev.Decode(&x) == nil {
					x.QueryID = q.ID
					c.sess.Record(&x)
				}
			}
			switch state.Status {
			case approvals.Approved:
				return nil
			case approvals.Denied:
				return &refusal{code: "42501", msg: fmt.Sprintf("Gatehouse: approval %s denied by %s: %s", id, state.Denial.By, state.Denial.Reason), detail: "approval " + id}
			case approvals.Expired, approvals.Cancelled:
				return &refusal{code: "57014", msg: fmt.Sprintf("Gatehouse: approval %s was %s; the statement was not run", id, state.Status), detail: "approval " + id}
			}
		case <-timer.C:
			ex := &schemas.ApprovalExpired{ApprovalID: id, QueryID: q.ID, Deadline: req.Deadline}
			c.publishApproval(ctx, id, schemas.TypeApprovalExpired, system, ex, id+".expired")
			return &refusal{code: "57014", msg: fmt.Sprintf("Gatehouse: approval %s was not granted before its deadline (%s); the statement was not run", id, req.Deadline.Format(time.RFC3339)), detail: "approval " + id}
		case why := <-cancelled:
			cx := &schemas.ApprovalCancelled{ApprovalID: id, QueryID: q.ID, Reason: why}
			c.publishApproval(ctx, id, schemas.TypeApprovalCancelled, c.st.identity.Identity, cx, id+".cancelled")
			return &refusal{code: "57014", msg: "canceling statement due to user request", detail: "Gatehouse: approval " + id + " cancelled; the statement was not run"}
		case <-ctx.Done():
			return &refusal{code: "57P01", msg: "terminating connection: Gatehouse is shutting down"}
		}
	}
}

// publishApproval records an approval event on GH_APPROVALS and in the session's trail.
func (c *conn) publishApproval(ctx context.Context, id, typ string, actor schemas.Identity, p schemas.Payload, msgID string) {
	c.sess.Record(p)
	e, err := approvals.Event(typ, actor, c.st.resource.Name, p, time.Now())
	if err == nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = approvals.Publish(pctx, c.srv.approvals.JS, id, e, msgID)
		cancel()
	}
	if err != nil {
		c.srv.log.Warn("approval event not published", "approval", id, "type", typ, "err", err)
	}
}

// watchDisconnect reports a client that goes away while its statement is held: it waits
// for the client's next bytes without consuming them (a Terminate counts as going away).
// stop ends the watch, and the client loop can read again.
func (c *conn) watchDisconnect(out chan<- string) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b, err := c.cr.r.Peek(1)
		if err != nil {
			if !isTimeout(err) {
				out <- "client_disconnected"
			}
			return
		}
		if b[0] == 'X' {
			out <- "client_disconnected"
		}
	}()
	return func() {
		_ = c.client.SetReadDeadline(time.Now())
		<-done
		_ = c.client.SetReadDeadline(time.Time{})
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// defaultDetectors mask what approvers see of a statement.
var defaultDetectors = &schemas.MaskSpec{Detectors: []schemas.MaskDetector{{Name: "card", Method: "partial"},
	{Name: "email", Method: "redact"}, {Name: "ssn", Method: "redact"}, {Name: "iban", Method: "redact"}, {Name: "phone", Method: "redact"}}}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
