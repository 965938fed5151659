package session

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// Requests of protocols other than SQL (an SSH channel or channel request, an sftp
// operation): each is recorded as its protocol's event, decided, and the decision recorded
// with the same number, exactly as a statement is (OnQuery). They share the session's
// counters with statements: session.end counts requests decided, denied and held.

// OnRequest records a request — event makes its event from the request's number — asks for
// a decision on the request part sets (fill), and records the decision. The returned
// decision is the one to enforce: when the audit trail cannot take the events, or the
// policy service does not answer, it is a deny that says why (fail closed).
func (s *Session) OnRequest(ctx context.Context, event func(id uint64) schemas.Payload, fill func(*schemas.DecisionRequest)) *Query {
	q := s.nextQuery()
	if err := s.add(event(q.ID)); err != nil {
		q.Decision = schemas.DecisionReply{Effect: schemas.EffectDeny, Reason: "request refused: " + err.Error()}
		s.countDenied()
		return q
	}
	start := time.Now()
	req := &schemas.DecisionRequest{
		Identity: s.Identity.Identity,
		Claims:   s.Identity.Claims,
		Resource: schemas.Resource{Name: s.Resource.Name, Type: s.Resource.Type, Labels: s.Resource.Labels},
		Agent:    s.Agent,
	}
	fill(req)
	q.Decision = s.decider.Decide(ctx, req)
	s.settle(ctx, q, start, "request")
	return q
}

// RefuseRequest records a request the gateway refuses without asking the policy (X11
// forwarding, a request it cannot read), with a deny decision that says why.
func (s *Session) RefuseRequest(event func(id uint64) schemas.Payload, rule, reason string) *Query {
	q := s.nextQuery()
	q.Decision = schemas.DecisionReply{Effect: schemas.EffectDeny, Policy: "gatehouse", Rule: rule, Reason: reason}
	_ = s.add(event(q.ID))
	_ = s.add(decisionEvent(q.ID, &q.Decision, 0))
	_ = s.flushSoon()
	s.countDenied()
	return q
}

func (s *Session) nextQuery() *Query {
	s.mu.Lock()
	s.queries++
	q := &Query{ID: s.queries, start: time.Now()}
	s.mu.Unlock()
	return q
}

// settle records q's decision (made since start; q is a statement or a request: what) and counts it: the grants it was allowed
// under, the decision event (in strict mode durable before the request may run), held or
// denied. A trail that cannot take the decision turns it into a deny.
func (s *Session) settle(ctx context.Context, q *Query, start time.Time, what string) {
	s.mu.Lock()
	s.revision = q.Decision.Revision
	for _, g := range q.Decision.Grants {
		if s.grants == nil {
			s.grants = map[string]bool{}
		}
		s.grants[g] = true
	}
	s.mu.Unlock()
	d := &q.Decision
	err := s.add(decisionEvent(q.ID, d, time.Since(start)))
	if err == nil {
		if s.strict {
			var wait func(context.Context) error
			if wait, err = s.flush(true); err == nil && wait != nil {
				err = wait(ctx)
			}
		} else {
			err = s.flushSoon()
		}
	}
	if err != nil {
		q.Decision = schemas.DecisionReply{Effect: schemas.EffectDeny, Revision: d.Revision, Reason: what + " refused: audit trail unavailable: " + err.Error()}
	}
	switch {
	case q.Decision.Effect == schemas.EffectRequireApproval:
		s.mu.Lock()
		s.held++
		s.mu.Unlock()
	case !q.Decision.Allowed():
		s.countDenied()
	}
}

// Flush sends what the session has recorded: in strict mode it waits until JetStream has
// it, in buffered mode it is handed to the spool.
func (s *Session) Flush(ctx context.Context) error {
	if !s.strict {
		return s.flushSoon()
	}
	wait, err := s.flush(true)
	if err == nil && wait != nil {
		err = wait(ctx)
	}
	return err
}
