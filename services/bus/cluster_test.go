package bus_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/bus/embedded"
)

// TestClusterSurvivesANode runs a real three-node JetStream cluster: Gatehouse's streams
// and buckets are created with three replicas, audit events are published as a strict
// proxy publishes them (each waits for its acknowledgement; one that fails is sent again
// with the same message id), the node leading GH_AUDIT is shut down in the middle,
// publishing goes on once a new leader is elected, and afterwards every acknowledged event
// is in the stream exactly once.
func TestClusterSurvivesANode(t *testing.T) {
	nodes := bustest.Cluster(t, 3, "")
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := bus.Connect(ctx, strings.Join(urls, ","), "cluster-test", bus.Options{Replicas: 3, StreamMaxBytes: 1 << 30},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer b.NC.Close()

	// Every stream and bucket Gatehouse creates gets the bus's replicas.
	require.NoError(t, bus.EnsureRevokeStream(ctx, b.JS))
	kv, err := b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketGrants, History: 8})
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas)
	for _, name := range []string{bus.StreamAudit, bus.StreamApprovals, "GH_REVOKE"} {
		s, err := b.JS.Stream(ctx, name)
		require.NoError(t, err)
		require.Equal(t, 3, s.CachedInfo().Config.Replicas, name)
	}
	audit, err := b.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	leader := audit.CachedInfo().Cluster.Leader
	require.NotEmpty(t, leader)

	// A strict publisher: the next event goes out once this one is acknowledged.
	const total = 600
	var acked atomic.Int64
	var ackedAfterKill atomic.Int64
	var killed atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- bustest.PublishStrict(ctx, b.JS, total, func(int) {
			acked.Add(1)
			if killed.Load() {
				ackedAfterKill.Add(1)
			}
		})
	}()
	require.Eventually(t, func() bool { return acked.Load() >= total/3 }, time.Minute, 10*time.Millisecond)
	var down *embedded.Server
	for _, n := range nodes {
		if n.Name() == leader {
			down = n
		}
	}
	require.NotNil(t, down, "leader %s", leader)
	down.Shutdown()
	killed.Store(true)
	require.NoError(t, <-done)
	require.Greater(t, ackedAfterKill.Load(), int64(total/3), "publishing went on after the leader was shut down")

	// A new leader, on a node still up.
	require.Eventually(t, func() bool {
		info, err := audit.Info(ctx)
		return err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != leader
	}, time.Minute, 50*time.Millisecond)

	// Every acknowledged event exactly once: each stored message, by sequence, from the
	// new leader.
	bustest.RequireExactlyOnce(ctx, t, audit, total)
}
