package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// One holder at a time: a second is refused while the first works (its lease renewed past
// the TTL), gets it once the first releases it, takes over a lease its holder stopped
// renewing only after a TTL of its own observation, and a holder whose lease was taken has
// its work cancelled.
func TestLeaseOneHolderAtATime(t *testing.T) {
	ctx := context.Background()
	b := bustest.Connect(t)
	kv, err := bus.OpenLocks(ctx, b.JS)
	require.NoError(t, err)
	const ttl = 400 * time.Millisecond
	a := &bus.Lease{KV: kv, Key: "migrations.gh", Owner: "a", TTL: ttl}
	c := &bus.Lease{KV: kv, Key: "migrations.gh", Owner: "c", TTL: ttl}

	// a works for three TTLs; c is refused all along (a renews), naming a.
	var inside atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- a.Do(ctx, func(ctx context.Context) error {
			inside.Add(1)
			close(started)
			<-release
			inside.Add(-1)
			return ctx.Err()
		})
	}()
	<-started
	for deadline := time.Now().Add(3 * ttl); time.Now().Before(deadline); {
		err := c.Do(ctx, func(context.Context) error { t.Error("c ran while a held the lease"); return nil })
		require.ErrorIs(t, err, bus.ErrLeaseHeld)
		require.Contains(t, err.Error(), `"a"`)
		time.Sleep(ttl / 8)
	}
	close(release)
	require.NoError(t, <-done, "a kept its lease")

	// Released: c gets it at once.
	ran := false
	require.NoError(t, c.Do(ctx, func(context.Context) error { ran = true; return nil }))
	require.True(t, ran)

	// A holder that died: its key stays, never renewed. c is refused until it has seen the
	// same revision for a TTL, then takes it over.
	_, err = kv.Create(ctx, "migrations.dead", []byte("dead"))
	require.NoError(t, err)
	d := &bus.Lease{KV: kv, Key: "migrations.dead", Owner: "c", TTL: ttl}
	first := time.Now()
	var took time.Duration
	require.Eventually(t, func() bool {
		err := d.Do(ctx, func(context.Context) error { took = time.Since(first); return nil })
		if err != nil {
			require.ErrorIs(t, err, bus.ErrLeaseHeld)
			return false
		}
		return true
	}, 10*time.Second, ttl/8)
	require.GreaterOrEqual(t, took, ttl, "taken over only after a TTL without renewal")

	// A holder whose lease another took (it was cut off past a TTL) has its work cancelled.
	held := make(chan struct{})
	lost := make(chan error)
	go func() {
		lost <- a.Do(ctx, func(ctx context.Context) error {
			close(held)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-held
	require.Eventually(t, func() bool { // as a taker does (a renewal in between makes it try again)
		e, err := kv.Get(ctx, "migrations.gh")
		require.NoError(t, err)
		_, err = kv.Update(ctx, "migrations.gh", []byte("thief"), e.Revision())
		return err == nil
	}, 10*time.Second, time.Millisecond)
	select {
	case err := <-lost:
		require.Error(t, err)
		require.Contains(t, err.Error(), "lost")
		require.False(t, errors.Is(err, bus.ErrLeaseHeld))
	case <-time.After(30 * time.Second):
		t.Fatal("the holder's work went on after its lease was taken")
	}
	v, err := kv.Get(ctx, "migrations.gh")
	require.NoError(t, err)
	require.Equal(t, "thief", string(v.Value()), "the loser does not delete the taker's lease")

	// A holder cut off from NATS stops its work within half a TTL of its last renewal,
	// before any taker (who waits a whole TTL) can start.
	nc, err := nats.Connect(b.NC.ConnectedUrl())
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cutKV, err := bus.OpenLocks(ctx, js)
	require.NoError(t, err)
	cut := &bus.Lease{KV: cutKV, Key: "migrations.cut", Owner: "cut", TTL: ttl}
	working := make(chan struct{})
	type result struct {
		err error
		d   time.Duration
	}
	stopped := make(chan result)
	go func() {
		var since time.Time
		err := cut.Do(ctx, func(ctx context.Context) error {
			since = time.Now()
			close(working)
			<-ctx.Done()
			return ctx.Err()
		})
		stopped <- result{err, time.Since(since)}
	}()
	<-working
	nc.Close()
	select {
	case r := <-stopped:
		require.ErrorContains(t, r.err, "not renewed")
		require.Less(t, r.d, ttl, "stopped before a taker could take the lease")
	case <-time.After(30 * time.Second):
		t.Fatal("a holder cut off from NATS went on working")
	}
}
