package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
)

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

// approve settles a require_approval decision through the session (which holds it as the
// approvals component says): nil when the statement may run (approved while the client
// waited, or a fail-fast approval of the identical statement was used), otherwise why
// not, as PostgreSQL clients read it.
func (c *conn) approve(ctx context.Context, q *session.Query, sql string) *refusal {
	ap := c.srv.approvals
	if q.Decision.Approval == nil || ap == nil {
		return denial(q)
	}
	sum := sha256.Sum256([]byte(sql))
	text := sql
	if rm, err := c.srv.masks.Get(defaultDetectors); err == nil {
		// What approvers see of the statement: card numbers and the like masked.
		b, _ := rm.Detect([]byte(truncate(text, 2*maxApprovalSQL)))
		text = string(b)
	}
	h := session.Hold{Query: q, Statement: text, Hash: hex.EncodeToString(sum[:]),
		Notify: func(message, hint string) {
			c.writeClient(encode(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
				Message: "Gatehouse: " + message, Hint: hint}), true)
		}}
	if q.Decision.Approval.Mode != "fail_fast" {
		// A cancel request or a disconnect ends the wait (even before the request is out:
		// the client may cancel as soon as it sent the statement).
		cancelled := make(chan string, 2)
		c.cancelKey.setHold(func() {
			select {
			case cancelled <- "cancel_request":
			default:
			}
		})
		defer c.cancelKey.setHold(nil)
		stop := c.watchDisconnect(cancelled)
		defer stop()
		h.Cancelled = cancelled
	}
	out := c.sess.HoldFor(ctx, ap, h)
	if out.Approved {
		return nil
	}
	detail := ""
	if out.ApprovalID != "" {
		detail = "approval " + out.ApprovalID
	}
	switch out.End {
	case "expired", "cancelled", "deadline":
		return &refusal{code: "57014", msg: "Gatehouse: " + out.Message, detail: detail}
	case "client_cancelled":
		return &refusal{code: "57014", msg: "canceling statement due to user request", detail: "Gatehouse: " + out.Message}
	case "shutdown":
		return &refusal{code: "57P01", msg: "terminating connection: Gatehouse is shutting down"}
	case "pending":
		return &refusal{code: "42501", msg: "Gatehouse: " + out.Message}
	}
	return &refusal{code: "42501", msg: "Gatehouse: " + out.Message, detail: detail}
}

// maxApprovalSQL bounds the statement shown to approvers (the session bounds it again).
const maxApprovalSQL = 2000

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
