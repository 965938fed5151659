package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/policy"
)

// Decider asks for decisions. Implementations never return an error: when they cannot get
// an answer they return a deny that says why (fail closed).
type Decider interface {
	Decide(ctx context.Context, req *policy.Request) policy.Decision
}

// NATSDecider asks the policy service over gh.policy.decide.
type NATSDecider struct {
	NC      *nats.Conn
	Timeout time.Duration
}

// Decide sends req and waits up to Timeout for the answer.
func (d *NATSDecider) Decide(ctx context.Context, req *policy.Request) policy.Decision {
	b, err := json.Marshal(req)
	if err != nil {
		return deny("cannot encode decision request: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	m, err := d.NC.RequestWithContext(ctx, bus.SubjectDecide, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return deny("no policy service is running; refusing (fail closed)")
	case errors.Is(err, context.DeadlineExceeded):
		return deny(fmt.Sprintf("policy service did not answer within %s; refusing (fail closed)", d.Timeout))
	case err != nil:
		return deny("policy service unreachable (" + err.Error() + "); refusing (fail closed)")
	}
	var dec policy.Decision
	if err := json.Unmarshal(m.Data, &dec); err != nil || dec.Effect == "" {
		return deny("policy service sent an unreadable decision; refusing (fail closed)")
	}
	return dec
}

func deny(reason string) policy.Decision {
	return policy.Decision{Effect: policy.EffectDeny, Reason: reason}
}
