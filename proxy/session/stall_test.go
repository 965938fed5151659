package session_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
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
	out, most int        // retries sent and not yet awaited to the end; the most at once
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
	reg := prometheus.NewRegistry()
	pub := session.NewPublisher(js, session.PublisherOptions{Spool: 2000, Wait: time.Second}, reg, discard)
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
	// A strict session's statement waits through the stall: it is answered only once its
	// events are acknowledged, after the heal.
	var healed atomic.Bool
	strictDone := make(chan bool, 1)
	strict := session.New(id, &config.Resource{Name: "demo", Type: "postgres", Audit: "strict"}, pub, fixedDecider{Effect: "allow", Rule: "r", Policy: "p"}, limits)
	go func() {
		// Start returns once session.start is acknowledged; the statement's decision
		// once it is.
		if err := strict.Start(ctx, &schemas.SessionStart{Protocol: "postgres"}); err != nil || !healed.Load() {
			strictDone <- false
			return
		}
		q := strict.OnQuery(ctx, "select 1", "simple", "")
		r := strict.NewResult(q)
		r.Columns([]schemas.Column{{Name: "v", TypeOID: 23}})
		r.Row([][]byte{[]byte("1")})
		r.Tag("SELECT 1")
		r.Done("ok")
		strictDone <- q.Decision.Allowed()
	}()
	waitLost := time.Now()
	for js.lostCount() < 301 && time.Since(waitLost) < 10*time.Second {
		time.Sleep(time.Millisecond) // the strict session's first send is swallowed too
	}
	lost := js.lostCount()
	require.Greater(t, lost, 300, "the strict session's start was not sent")
	healed.Store(true)
	js.heal()
	require.True(t, <-strictDone, "a strict statement was answered before its events were acknowledged")
	require.NoError(t, strict.End(ctx, "client_closed", nil, 0, 0))
	sessions = append(sessions, strict)
	for _, s := range sessions {
		evs := readSession(t, b, s.ID, 6)
		slices.SortFunc(evs, func(a, b schemas.Event) int { return int(a.Seq) - int(b.Seq) })
		require.NoError(t, schemas.VerifyChain(evs))
	}
	js.mu.Lock()
	most := js.most
	js.mu.Unlock()
	require.GreaterOrEqual(t, most, lost/2, "of %d failed messages, at most %d retries were awaited at once", lost, most)
	// Every message finished once: the spool is empty, and each event counted published
	// once.
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, pub.Close(closeCtx))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var published, spooled float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "gatehouse_events_published_total":
				published += m.GetCounter().GetValue()
			case "gatehouse_events_spooled":
				spooled += m.GetGauge().GetValue()
			}
		}
	}
	require.Equal(t, float64(6*len(sessions)), published)
	require.Zero(t, spooled)
}
