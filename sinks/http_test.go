package sinks_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/sinks"
)

func TestHTTPSinkDeliversEveryEventOnceAcrossFailuresAndRestarts(t *testing.T) {
	b := bustest.Connect(t)
	ctx := context.Background()
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			_, err := b.JS.Publish(ctx, bus.AuditSubject("demo", "s1", "db.query"), []byte(fmt.Sprintf(`{"id":"e%d","type":"db.query"}`, i)), jetstream.WithMsgID(fmt.Sprintf("e%d", i)))
			require.NoError(t, err)
		}
	}
	// Proxies send compressed batches of a session's events; a message that cannot be
	// read is skipped without holding up the rest.
	publishBatches := func(from, to int) {
		bad := nats.NewMsg(bus.AuditSubject("demo", "s2", "batch"))
		bad.Data = []byte("\x05garbage")
		bad.Header.Set(bus.HeaderEncoding, bus.EncodingS2)
		_, err := b.JS.PublishMsg(ctx, bad)
		require.NoError(t, err)
		for i := from; i < to; i += 10 {
			var data []byte
			for j := i; j < min(i+10, to); j++ {
				data = fmt.Appendf(data, `{"id":"e%d","type":"db.query","identity":{"subject":"svc-orders","issuer":"https://idp.example/"}}`+"\n", j)
			}
			m := nats.NewMsg(bus.AuditSubject("demo", "s2", "batch"))
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("e%d", i))
			bus.CompressAudit(m, data[:len(data)-1], nil)
			require.Equal(t, bus.EncodingS2, m.Header.Get(bus.HeaderEncoding))
			_, err := b.JS.PublishMsg(ctx, m)
			require.NoError(t, err)
		}
	}
	var mu sync.Mutex
	got := map[string]int{}
	var failures atomic.Int32
	failures.Store(3) // the SIEM is down for the first requests
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "Splunk hec-token", r.Header.Get("Authorization"))
		require.NotEmpty(t, r.Header.Get("X-Gatehouse-Batch"))
		if failures.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		sc := bufio.NewScanner(r.Body)
		mu.Lock()
		for sc.Scan() {
			var e struct{ ID string }
			require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
			got[e.ID]++
		}
		mu.Unlock()
	}))
	defer srv.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func() (cancel func()) {
		s := &sinks.Sink{Name: "siem", To: &sinks.HTTP{URL: srv.URL, Token: "Splunk hec-token"}, BatchSize: 7, Flush: 50 * time.Millisecond, Log: log}
		require.NoError(t, s.Start(ctx, b.JS))
		c, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = s.Run(c); close(done) }()
		return func() { stop(); <-done }
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}

	publish(0, 50)
	stop := run()
	require.Eventually(t, func() bool { return count() == 50 }, 20*time.Second, 10*time.Millisecond)
	stop()
	publish(50, 80) // while the sink is stopped
	publishBatches(80, 120)
	stop = run() // restarted: it goes on from its durable position
	require.Eventually(t, func() bool { return count() == 120 }, 20*time.Second, 10*time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		require.Equal(t, 1, n, "event %s delivered %d times", id, n)
	}
}
