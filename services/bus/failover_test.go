package bus_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/embedded"
)

// TestStalledServerIsLeftInSeconds connects through a relay that then stops passing bytes
// without closing anything (a server partitioned away, packets dropped): the bus notices
// by its PINGs going unanswered and moves to the other server it knows within
// (MaxPingsOut+1)×PingInterval, not nats.go's default of minutes.
func TestStalledServerIsLeftInSeconds(t *testing.T) {
	srv, err := embedded.Start("127.0.0.1:0", t.TempDir())
	require.NoError(t, err)
	defer srv.Shutdown()
	direct := srv.URL()
	relay := newStallRelay(t, direct[len("nats://"):])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The relay first: the client starts there and has the direct URL to move to.
	b, err := bus.Connect(ctx, "nats://"+relay.addr()+","+direct, "ping-test", bus.Options{StreamMaxBytes: 1 << 20},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nats.DontRandomize())
	require.NoError(t, err)
	defer b.NC.Close()
	require.Equal(t, "nats://"+relay.addr(), b.NC.ConnectedUrl())

	relay.stall()
	stalled := time.Now()
	bound := time.Duration(bus.MaxPingsOut+1)*bus.PingInterval + 3*time.Second
	require.Eventually(t, func() bool { return b.NC.IsConnected() && b.NC.ConnectedUrl() == direct }, bound, 50*time.Millisecond,
		"still on the stalled server %s after %s", b.NC.ConnectedUrl(), bound)
	t.Logf("left the stalled server after %s", time.Since(stalled).Round(10*time.Millisecond))
	require.NoError(t, b.NC.Publish("ping.test", []byte("x")))
	require.NoError(t, b.NC.FlushTimeout(5*time.Second))
}

// stallRelay relays TCP to a server until stall, then holds every byte (connections stay
// open, as behind a partition that drops packets).
type stallRelay struct {
	ln      net.Listener
	mu      sync.Mutex
	stalled chan struct{} // closed: bytes pass
}

func newStallRelay(t *testing.T, target string) *stallRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &stallRelay{ln: ln, stalled: make(chan struct{})}
	close(r.stalled)
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, c, up)
			cmu.Unlock()
			go r.pipe(up, c)
			go r.pipe(c, up)
		}
	}()
	return r
}

func (r *stallRelay) addr() string { return r.ln.Addr().String() }

func (r *stallRelay) stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stalled = make(chan struct{})
}

func (r *stallRelay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			gate := r.stalled
			r.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestLostAckFailsThePublish publishes asynchronously to a subject whose only listener
// takes the message and never answers, as a stream leader killed between taking a message
// and acknowledging it does: the publish fails within PublishAckTimeout (so the publisher
// sends it again) instead of waiting for ever.
func TestLostAckFailsThePublish(t *testing.T) {
	srv, err := embedded.Start("127.0.0.1:0", t.TempDir())
	require.NoError(t, err)
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Connect(ctx, srv.URL(), "ack-test", bus.Options{StreamMaxBytes: 1 << 20}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer b.NC.Close()
	sub, err := b.NC.SubscribeSync("lost.ack") // takes it, answers nothing
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, b.NC.Flush())

	began := time.Now()
	fut, err := b.JS.PublishMsgAsync(nats.NewMsg("lost.ack"))
	require.NoError(t, err)
	select {
	case <-fut.Ok():
		t.Fatal("acknowledged by nobody")
	case err := <-fut.Err():
		require.ErrorIs(t, err, jetstream.ErrAsyncPublishTimeout)
	case <-time.After(bus.PublishAckTimeout + 5*time.Second):
		t.Fatalf("the publish was neither acknowledged nor failed %s after it", bus.PublishAckTimeout+5*time.Second)
	}
	t.Logf("failed after %s", time.Since(began).Round(10*time.Millisecond))
}
