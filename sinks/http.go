package sinks

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTP posts batches of events as NDJSON (generic JSON webhooks, Splunk HEC's raw
// endpoint); a 2xx answer means taken. Each request carries X-Gatehouse-Batch, the stream
// position of its first event: a receiver that remembers the positions it took drops the
// one repeat a crash between its answer and our acknowledgement can cause.
type HTTP struct {
	URL    string
	Token  string // sent as "Authorization: <Token>" when set (e.g. "Splunk <hec-token>")
	Client *http.Client
}

// Describe names the destination without its query string (which may hold a key).
func (h *HTTP) Describe() string {
	if i := strings.Index(h.URL, "?"); i >= 0 {
		return h.URL[:i] + "?…"
	}
	return h.URL
}

// Deliver posts b.
func (h *HTTP) Deliver(ctx context.Context, b *Batch) error {
	var body bytes.Buffer
	b.Events(func(ev []byte) {
		body.Write(ev)
		body.WriteByte('\n')
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Gatehouse-Batch", strconv.FormatUint(b.First, 10))
	if h.Token != "" {
		req.Header.Set("Authorization", h.Token)
	}
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}
