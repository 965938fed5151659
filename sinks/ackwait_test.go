package sinks_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/sinks"
)

// recorder is a destination that counts each event it took, after an optional delay per
// delivery; hold makes it never answer (a process that dies mid-delivery).
type recorder struct {
	mu    sync.Mutex
	got   map[string]int
	delay time.Duration
	hold  bool
	took  chan struct{} // a delivery started
}

func (r *recorder) Deliver(ctx context.Context, b *sinks.Batch) error {
	select {
	case r.took <- struct{}{}:
	default:
	}
	if r.hold {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.delay):
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.Events(func(ev []byte) { r.got[string(ev)]++ })
	return nil
}

func (r *recorder) Describe() string { return "recorder" }

func (r *recorder) counts() (distinct, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.got {
		total += n
	}
	return len(r.got), total
}

func newRecorder() *recorder { return &recorder{got: map[string]int{}, took: make(chan struct{}, 1)} }

func runSink(t *testing.T, s *sinks.Sink, js jetstream.JetStream) (stop func()) {
	require.NoError(t, s.Start(context.Background(), js))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// A sinks process that dies in the middle of a delivery holds what it fetched only for
// AckWait: a new process delivers it then, not minutes later.
func TestSinkDeadMidDeliveryIsRedeliveredWithinAckWait(t *testing.T) {
	b := bustest.Connect(t)
	for i := range 20 {
		_, err := b.JS.Publish(context.Background(), bus.AuditSubject("demo", "s1", "db.query"), fmt.Appendf(nil, `{"id":"e%d"}`, i))
		require.NoError(t, err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dead := newRecorder()
	dead.hold = true
	stopDead := runSink(t, &sinks.Sink{Name: "siem", BatchSize: 20, Flush: 50 * time.Millisecond, AckWait: time.Second, To: dead, Log: log}, b.JS)
	<-dead.took
	stopDead() // gone without acknowledging (as a kill -9 leaves it)

	alive := newRecorder()
	reg := prometheus.NewRegistry()
	start := time.Now()
	stop := runSink(t, &sinks.Sink{Name: "siem", BatchSize: 20, Flush: 50 * time.Millisecond, AckWait: time.Second, To: alive, Log: log, Metrics: sinks.NewMetrics(reg)}, b.JS)
	defer stop()
	require.Eventually(t, func() bool { d, _ := alive.counts(); return d == 20 }, 30*time.Second, 10*time.Millisecond)
	t.Logf("redelivered %v after the dead process let go (AckWait 1s)", time.Since(start).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		n, err := testutil.GatherAndCount(reg, "gatehouse_sink_events_total")
		if err != nil || n != 1 {
			return false
		}
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "gatehouse_sink_events_total" {
				return mf.GetMetric()[0].GetCounter().GetValue() == 20
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "events counted")
}

// Two copies of the sinks service share a sink's consumer: a delivery slower than AckWait
// is kept from being redelivered to the other copy by its progress acknowledgements, so
// every event reaches the destination once.
func TestSinkSlowDeliveryIsNotRedelivered(t *testing.T) {
	b := bustest.Connect(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	to := newRecorder()
	to.delay = 1500 * time.Millisecond // five times AckWait
	for range 2 {
		stop := runSink(t, &sinks.Sink{Name: "siem", BatchSize: 5, Flush: 50 * time.Millisecond, AckWait: 300 * time.Millisecond, To: to, Log: log}, b.JS)
		defer stop()
	}
	for i := range 20 {
		_, err := b.JS.Publish(context.Background(), bus.AuditSubject("demo", "s1", "db.query"), fmt.Appendf(nil, `{"id":"e%d"}`, i))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { d, _ := to.counts(); return d == 20 }, time.Minute, 10*time.Millisecond)
	_, total := to.counts()
	require.Equal(t, 20, total, "no event delivered twice")
}
