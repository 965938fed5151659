package session_test

import (
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
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// stallJS stalls acknowledgements as a stream leader that lost its quorum does: while
// stalled, a message's first send is never stored and its acknowledgement never comes; on
// heal every one of them fails as nats.go fails them after its timeout. Sends of a message
// seen before (the publisher's retries) go to the real JetStream, their outcome handed to
// the publisher through channels of the test's own, so the test can tell how many were
// awaited at once.
type stallJS struct {
	jetstream.JetStream
	mu        sync.Mutex
	stalled   bool
	seen      map[string]bool
	lost      []*lostAck // first sends swallowed while stalled, in the order sent
	out, most int       // retries sent and not yet awaited to the end; the most at once
}

type lostAck struct {
	m   *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *lostAck) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *lostAck) Err() <-chan error            { return f.err }
func (f *lostAck) Msg() *nats.Msg               { return f.m }

func (j *stallJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	id := m.Header.Get(jetstream.MsgIDHeader)
	j.mu.Lock()
	retry := j.seen[id]
	j.seen[id] = true
	if !retry && j.stalled {
		f := &lostAck{m: m, ok: make(chan *jetstream.PubAck), err: make(chan error, 1)}
		j.lost = append(j.lost, f)
		j.mu.Unlock()
		return f, nil
	}
	if retry {
		j.out++
		j.most = max(j.most, j.out)
	}
	j.mu.Unlock()
	fut, err := j.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || !retry {
		if retry {
			j.done()
		}
		return fut, err
	}
	// Handed over unbuffered: a send completes when the publisher takes the outcome.
	w := &lostAck{m: m, ok: make(chan *jetstream.PubAck), err: make(chan error)}
	go func() {
		defer j.done()
		select {
		case a := <-fut.Ok():
			w.ok <- a
		case e := <-fut.Err():
			w.err <- e
		}
	}()
	return w, nil
}

func (j *stallJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	j.mu.Lock()
	j.out++
	j.most = max(j.most, j.out)
	j.mu.Unlock()
	defer j.done()
	return j.JetStream.PublishMsg(ctx, m, opts...)
}

func (j *stallJS) done() {
	j.mu.Lock()
	j.out--
	j.mu.Unlock()
}

func (j *stallJS) lostCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.lost)
}

// heal ends the stall: every swallowed send fails with nats.go's acknowledgement timeout,
// the newest first, so that when the publisher learns of the oldest's failure it can see
// the failures of all those behind it.
func (j *stallJS) heal() {
	j.mu.Lock()
	j.stalled = false
	lost := slices.Clone(j.lost)
	j.mu.Unlock()
	for _, f := range slices.Backward(lost) {
		f.err <- jetstream.ErrAsyncPublishTimeout
	}
}

// After an acknowledgement stall (a stream leader change fails every message in flight,
// thousands), the failed messages are sent again together, not one round trip each — one
// at a time that took 31 s after the chaos run's partition — and every session's events
// are stored, their chain whole.
func TestRetriesAfterAnAckStallGoOutTogether(t *testing.T) {
	b := bustest.Connect(t)
	js := &stallJS{JetStream: b.JS, stalled: true, seen: map[string]bool{}}
	pub := session.NewPublisher(js, session.PublisherOptions{Spool: 2000, Wait: time.Second}, prometheus.NewRegistry(), discard)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pub.Close(ctx)
	})
	ctx := context.Background()
	id := &identity.Identity{}
	id.Subject, id.Kind = "svc-orders", "service"
	var sessions []*session.Session
	for js.lostCount() < 300 {
		require.Less(t, len(sessions), 1000, "the stall swallowed %d sends", js.lostCount())
		s := session.New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "buffered"}, pub, fixedDecider{Effect: "allow", Rule: "r", Policy: "p"}, limits)
		require.NoError(t, s.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}))
		recordSelectOne(ctx, s)
		require.NoError(t, s.End(ctx, "client_closed", nil, 0, 0))
		sessions = append(sessions, s)
	}
	lost := js.lostCount()
	js.heal()
	for _, s := range sessions {
		evs := readSession(t, b, s.ID, 6)
		slices.SortFunc(evs, func(a, b schemas.Event) int { return int(a.Seq) - int(b.Seq) })
		require.NoError(t, schemas.VerifyChain(evs))
	}
	js.mu.Lock()
	defer js.mu.Unlock()
	require.GreaterOrEqual(t, js.most, lost/2, "of %d failed messages, at most %d retries were awaited at once", lost, js.most)
}
