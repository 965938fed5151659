package approvals_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

var (
	requester = schemas.Identity{Subject: "dba-oncall", Groups: []string{"dba", "approvers"}}
	approver1 = schemas.Identity{Subject: "approver-1", Groups: []string{"approvers"}}
	approver2 = schemas.Identity{Subject: "approver-2", Groups: []string{"approvers"}}
	outsider  = schemas.Identity{Subject: "svc-orders", Groups: []string{"orders-readers"}}
)

func request(t *testing.T, b *bus.Bus, required uint32, mode string) string {
	t.Helper()
	id := approvals.NewID()
	e, err := approvals.Event(schemas.TypeApprovalRequested, requester, "demo", &schemas.ApprovalRequested{ApprovalID: id, Kind: "statement",
		Statement: "delete from customers where id = 1", StatementHash: "h1", Approvers: []string{"approvers"}, Required: required,
		Deadline: time.Now().Add(time.Hour), Mode: mode, WindowSeconds: 3600}, time.Now())
	require.NoError(t, err)
	require.NoError(t, approvals.Publish(context.Background(), b.JS, id, e, ""))
	return id
}

func start(t *testing.T, b *bus.Bus) *approvals.Service {
	t.Helper()
	s := &approvals.Service{JS: b.JS, NC: b.NC, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, s.Start(ctx))
	go func() { _ = s.Run(ctx) }()
	return s
}

func TestNOfMRulesAndRebuildAfterRestart(t *testing.T) {
	b := bustest.Connect(t)
	ctx := context.Background()
	s := start(t, b)
	id := request(t, b, 2, "hold")
	require.Eventually(t, func() bool { _, ok := s.Get(id); return ok }, 5*time.Second, 10*time.Millisecond)

	var ae *approvals.Error
	_, err := s.Decide(ctx, id, requester, "approve", "cli", "")
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "the requester cannot approve their own request", ae.Message)
	_, err = s.Decide(ctx, id, outsider, "approve", "cli", "")
	require.ErrorAs(t, err, &ae)
	require.Contains(t, ae.Message, "svc-orders is not in an approver group")
	_, err = s.Decide(ctx, id, approver1, "deny", "cli", "")
	require.ErrorAs(t, err, &ae, "a denial needs a reason")

	a, err := s.Decide(ctx, id, approver1, "approve", "cli", "")
	require.NoError(t, err)
	require.Equal(t, approvals.Pending, a.Status, "1 of 2")
	// The same click again (a Slack retry, a double click) counts once.
	a, err = s.Decide(ctx, id, approver1, "approve", "slack", "")
	require.NoError(t, err)
	require.Len(t, a.Approvals, 1)
	require.Equal(t, approvals.Pending, a.Status)
	// Even when it reaches the stream twice (two gateways, a retried publish).
	e, err := approvals.Event(schemas.TypeApprovalDecided, approver1, "demo", &schemas.ApprovalDecided{ApprovalID: id, Decision: "approve", Via: "api", Outcome: "pending", Approvals: 1}, time.Now())
	require.NoError(t, err)
	require.NoError(t, approvals.Publish(ctx, b.JS, id, e, "")) // another message id: not deduplicated by JetStream
	time.Sleep(100 * time.Millisecond)
	a, _ = s.Get(id)
	require.Len(t, a.Approvals, 1)

	a, err = s.Decide(ctx, id, approver2, "approve", "api", "")
	require.NoError(t, err)
	require.Equal(t, approvals.Approved, a.Status)
	require.Equal(t, []string{"approver-1", "approver-2"}, a.ApprovedBy())
	_, err = s.Decide(ctx, id, approver2, "deny", "api", "too late")
	require.ErrorAs(t, err, &ae)
	require.Contains(t, ae.Message, "is approved")

	denied := request(t, b, 1, "hold")
	require.Eventually(t, func() bool { _, ok := s.Get(denied); return ok }, 5*time.Second, 10*time.Millisecond)
	a, err = s.Decide(ctx, denied, approver2, "deny", "slack", "not during the freeze")
	require.NoError(t, err)
	require.Equal(t, approvals.Denied, a.Status)
	require.Equal(t, "not during the freeze", a.Denial.Reason)

	// A new service (a restart) rebuilds every approval from GH_APPROVALS.
	s2 := start(t, b)
	for _, x := range []string{id, denied} {
		before, _ := s.Get(x)
		after, ok := s2.Get(x)
		require.True(t, ok)
		require.Equal(t, before.Status, after.Status)
		require.Equal(t, before.ApprovedBy(), after.ApprovedBy())
	}
}

func TestDeadlinesExpire(t *testing.T) {
	b := bustest.Connect(t)
	s := start(t, b)
	id := approvals.NewID()
	e, err := approvals.Event(schemas.TypeApprovalRequested, requester, "demo", &schemas.ApprovalRequested{ApprovalID: id, Kind: "statement",
		Approvers: []string{"approvers"}, Required: 1, Deadline: time.Now().Add(300 * time.Millisecond), Mode: "hold"}, time.Now())
	require.NoError(t, err)
	require.NoError(t, approvals.Publish(context.Background(), b.JS, id, e, ""))
	require.Eventually(t, func() bool { a, _ := s.Get(id); return a.Status == approvals.Expired }, 5*time.Second, 20*time.Millisecond)
	_, err = s.Decide(context.Background(), id, approver1, "approve", "cli", "")
	require.Error(t, err, "an expired request cannot be approved")
}

func TestFailFastApprovalIsUsedOnce(t *testing.T) {
	b := bustest.Connect(t)
	s := start(t, b)
	id := request(t, b, 1, "fail_fast")
	claim := func() approvals.ClaimReply {
		body, _ := json.Marshal(approvals.ClaimRequest{Subject: requester.Subject, Resource: "demo", StatementHash: "h1", SessionID: "s"})
		m, err := b.NC.Request(approvals.SubjectClaim, body, 5*time.Second)
		require.NoError(t, err)
		var r approvals.ClaimReply
		require.NoError(t, json.Unmarshal(m.Data, &r))
		return r
	}
	require.Eventually(t, func() bool { return claim().Pending == id }, 5*time.Second, 20*time.Millisecond)
	_, err := s.Decide(context.Background(), id, approver1, "approve", "cli", "")
	require.NoError(t, err)
	require.Equal(t, id, claim().Used)
	require.Equal(t, approvals.ClaimReply{}, claim(), "once")
	require.Eventually(t, func() bool { a, _ := s.Get(id); return a.Used }, 5*time.Second, 20*time.Millisecond)
}

func TestNoServiceNoClaim(t *testing.T) {
	b := bustest.Connect(t)
	_, err := b.NC.Request(approvals.SubjectClaim, []byte(`{}`), 200*time.Millisecond)
	require.True(t, errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout))
}
