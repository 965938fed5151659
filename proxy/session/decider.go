package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/gatehouse/gatehouse/schemas"
)

// Decider asks for decisions. Implementations never return an error: when they cannot get
// an answer they return a deny that says why (fail closed).
type Decider interface {
	Decide(ctx context.Context, req *schemas.DecisionRequest) schemas.DecisionReply
}

// NATSDecider asks the policy service over gh.policy.decide.
type NATSDecider struct {
	NC      *nats.Conn
	Timeout time.Duration
}

// Decide sends req and waits for the answer: up to Timeout, and longer for a large
// statement (parsing costs about a microsecond a byte: timeoutPerMiB more for each MiB).
// A large request is compressed, and one that does not fit in a NATS message is refused
// saying so.
func (d *NATSDecider) Decide(ctx context.Context, req *schemas.DecisionRequest) schemas.DecisionReply {
	size := 0
	if req.SQL != nil {
		size = len(req.SQL.Text)
	}
	if size > schemas.MaxStatementBytes {
		// Not worth sending: the policy service refuses it.
		return schemas.DecisionReply{Effect: schemas.EffectDeny, Policy: "gatehouse", Rule: "statement-size", SQLState: "54000",
			Reason: fmt.Sprintf("the statement is %d bytes, over the %d bytes the policy analyses; refusing (fail closed): send it in smaller statements", size, schemas.MaxStatementBytes)}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return deny("cannot encode decision request: " + err.Error())
	}
	msg := &nats.Msg{Subject: schemas.SubjectDecide, Data: b}
	if len(b) > compressAbove {
		msg.Header = nats.Header{schemas.HeaderDecideEncoding: {schemas.EncodingS2}}
		msg.Data = s2.Encode(nil, b)
	}
	if max := d.NC.MaxPayload(); max > 0 && int64(len(msg.Data)+256) > max {
		return deny(fmt.Sprintf("the decision request for this %d-byte statement is %d bytes compressed, over the NATS server's max_payload of %d; refusing (fail closed): raise max_payload", size, len(msg.Data), max))
	}
	timeout := d.Timeout + time.Duration(size)*timeoutPerMiB/(1<<20)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := d.NC.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return deny("no policy service is running; refusing (fail closed)")
	case errors.Is(err, context.DeadlineExceeded):
		return deny(fmt.Sprintf("policy service did not answer within %s; refusing (fail closed)", timeout.Round(time.Millisecond)))
	case err != nil:
		return deny("policy service unreachable (" + err.Error() + "); refusing (fail closed)")
	}
	var dec schemas.DecisionReply
	if err := json.Unmarshal(m.Data, &dec); err != nil || dec.Effect == "" {
		return deny("policy service sent an unreadable decision; refusing (fail closed)")
	}
	return dec
}

// Large decision requests: compressed above compressAbove bytes, and given timeoutPerMiB
// more per MiB of statement (the parse is about a second per MiB on a loaded core).
const (
	compressAbove = 64 << 10
	timeoutPerMiB = 3 * time.Second
)

func deny(reason string) schemas.DecisionReply {
	return schemas.DecisionReply{Effect: schemas.EffectDeny, Reason: reason}
}
