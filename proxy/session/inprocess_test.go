package session_test

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// inProcessJS refuses the first message id it sees as JetStream does a message id whose
// earlier send was proposed by a leader that then lost its quorum: "duplicate message id is
// in process" (409, 10158), for as long as the stream's duplicate window lasts (here: for
// ever). Everything else goes to the real JetStream.
type inProcessJS struct {
	jetstream.JetStream
	mu    sync.Mutex
	stuck string
}

func (j *inProcessJS) refused(m *nats.Msg) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	id := m.Header.Get(jetstream.MsgIDHeader)
	if j.stuck == "" {
		j.stuck = id
	}
	return id == j.stuck
}

func (j *inProcessJS) conflict() error {
	return &jetstream.APIError{Code: 409, ErrorCode: bus.JSErrCodeMsgIDInProcess, Description: "duplicate message id is in process"}
}

// PublishMsgAsync refuses through the acknowledgement, as JetStream does.
func (j *inProcessJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if j.refused(m) {
		f := &lostAck{m: m, ok: make(chan *jetstream.PubAck), err: make(chan error, 1)}
		f.err <- j.conflict()
		return f, nil
	}
	return j.JetStream.PublishMsgAsync(m, opts...)
}

// A message whose id JetStream holds as in process (after a partition healed, for its
// whole duplicate window) does not hold the publisher: after a few refusals it goes out
// under an id of its own, with its events as they were, and the messages behind it are
// acknowledged in seconds, not minutes.
func TestMessageIDInProcessDoesNotHoldThePublisher(t *testing.T) {
	b := bustest.Connect(t)
	js := &inProcessJS{JetStream: b.JS}
	pub := session.NewPublisher(js, session.PublisherOptions{Spool: 1000, Wait: time.Second}, prometheus.NewRegistry(), discard)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = pub.Close(ctx)
	})
	id := &identity.Identity{}
	id.Subject, id.Kind = "svc-orders", "service"
	s := session.New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, pub, fixedDecider{Effect: "allow", Rule: "r", Policy: "p"}, limits)
	ctx := context.Background()
	began := time.Now()
	require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
	for range 3 {
		recordSelectOne(ctx, s)
	}
	require.NoError(t, s.End(ctx, "client_closed", nil, 0, 0))
	evs := readSession(t, b, s.ID, 14)
	require.Less(t, time.Since(began), 30*time.Second)
	// The refused message was stored after those behind it (as any retried one is); the
	// store orders a session by its sequence numbers.
	slices.SortFunc(evs, func(a, b schemas.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	require.NoError(t, schemas.VerifyChain(evs))
	js.mu.Lock()
	stuck := js.stuck
	js.mu.Unlock()
	// Judged by what the stream stored: the publisher's PublishMsg may not have returned
	// with its acknowledgement yet when the consumer above has the message.
	require.Contains(t, storedMsgIDs(t, b, s.ID), stuck+"~3", "the refused message went out under an id of its own")
}

// storedMsgIDs is the message id of each message GH_AUDIT holds for the session.
func storedMsgIDs(t *testing.T, b *bus.Bus, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + ".demo." + id + ".>"}})
	require.NoError(t, err)
	var ids []string
	for {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err, "after %d messages", len(ids))
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
		md, err := m.Metadata()
		require.NoError(t, err)
		if md.NumPending == 0 {
			return ids
		}
	}
}
