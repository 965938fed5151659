// Package sinks pushes the audit trail to SIEMs: each sink is a durable JetStream consumer
// of GH_AUDIT of its own, so its position survives restarts and a sink that is down only
// falls behind (the proxies never wait for it).
package sinks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/services/bus"
)

// HTTP posts batches of events as NDJSON (generic JSON webhooks, Splunk HEC's raw
// endpoint). A batch is acknowledged in JetStream only after a 2xx answer; until then it is
// retried with backoff. Each request carries X-Gatehouse-Batch, the stream position of its
// first event: a receiver that remembers the positions it took drops the one repeat a crash
// between its answer and our acknowledgement can cause.
type HTTP struct {
	Name      string
	URL       string
	Token     string // sent as "Authorization: <Token>" when set (e.g. "Splunk <hec-token>")
	BatchSize int
	Flush     time.Duration
	Client    *http.Client
	Log       *slog.Logger

	cons jetstream.Consumer
}

// Start creates (or finds) the sink's durable consumer.
func (h *HTTP) Start(ctx context.Context, js jetstream.JetStream) error {
	if h.BatchSize <= 0 {
		h.BatchSize = 500
	}
	if h.Flush <= 0 {
		h.Flush = time.Second
	}
	if h.Client == nil {
		h.Client = &http.Client{Timeout: 30 * time.Second}
	}
	var err error
	h.cons, err = js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, jetstream.ConsumerConfig{
		Durable: "sink-" + h.Name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Minute, MaxAckPending: h.BatchSize * 2,
	})
	if err != nil {
		return fmt.Errorf("sink %s: consumer: %w", h.Name, err)
	}
	return nil
}

// Run delivers until ctx ends.
func (h *HTTP) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		batch, err := h.cons.Fetch(h.BatchSize, jetstream.FetchMaxWait(h.Flush))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.Log.Warn("sink fetch failed", "sink", h.Name, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		var msgs []jetstream.Msg
		var body bytes.Buffer
		first := ""
		for m := range batch.Messages() {
			if first == "" {
				if md, err := m.Metadata(); err == nil {
					first = strconv.FormatUint(md.Sequence.Stream, 10)
				}
			}
			msgs = append(msgs, m)
			body.Write(bytes.TrimRight(m.Data(), "\n"))
			body.WriteByte('\n')
		}
		if len(msgs) == 0 {
			continue
		}
		if err := h.post(ctx, first, body.Bytes(), msgs); err != nil {
			return nil // shutting down; JetStream redelivers the batch
		}
		for _, m := range msgs {
			_ = m.Ack()
		}
	}
	return nil
}

// post sends one batch until the sink takes it (2xx) or ctx ends.
func (h *HTTP) post(ctx context.Context, first string, body []byte, msgs []jetstream.Msg) error {
	backoff := 250 * time.Millisecond
	for {
		err := func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/x-ndjson")
			req.Header.Set("X-Gatehouse-Batch", first)
			if h.Token != "" {
				req.Header.Set("Authorization", h.Token)
			}
			resp, err := h.Client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("%s", resp.Status)
			}
			return nil
		}()
		if err == nil {
			return nil
		}
		h.Log.Warn("sink delivery failed; retrying", "sink", h.Name, "url", redact(h.URL), "backoff", backoff, "err", err)
		for _, m := range msgs {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func redact(u string) string {
	if i := strings.Index(u, "?"); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
