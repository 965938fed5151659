// Package sessiontest is what the proxies' tests share: a development OIDC issuer with a
// verifier that trusts it, an audit publisher, and the audit trail read back from
// JetStream.
package sessiontest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Log is where the proxies under test log: nowhere, unless GATEHOUSE_TEST_LOG is set.
func Log() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// Issuer starts a development OIDC issuer for the test and returns a verifier that trusts
// it and a function minting its tokens.
func Issuer(t testing.TB, log *slog.Logger) (*identity.Verifier, func(identity.TokenRequest) string) {
	t.Helper()
	e := echo.New()
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	dev, err := identity.NewDevIssuer(hs.URL+identity.DevIssuerPath, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	dev.Register(e)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, log)
	return v, func(r identity.TokenRequest) string {
		tok, err := dev.Mint(r)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// Publisher is an audit publisher to b, closed when the test ends.
func Publisher(t testing.TB, b *bus.Bus, log *slog.Logger) *session.Publisher {
	pub := session.NewPublisher(b.JS, session.PublisherOptions{Spool: 10000, Wait: 5 * time.Second, Linger: 5 * time.Millisecond}, prometheus.NewRegistry(), log)
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	return pub
}

// Events reads the audit trail of a resource until cond holds of it (30 s at most).
func Events(t testing.TB, b *bus.Bus, resource string, cond func([]schemas.Event) bool) []schemas.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var evs []schemas.Event
		c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + "." + resource + ".>"}})
		if err != nil {
			t.Fatal(err)
		}
		for {
			m, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			data, err := bus.AuditData(m.Headers(), m.Data())
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range bytes.Split(data, []byte{'\n'}) {
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				var ev schemas.Event
				if err := json.Unmarshal(line, &ev); err != nil {
					t.Fatal(err)
				}
				evs = append(evs, ev)
			}
		}
		if cond(evs) {
			return evs
		}
		if ctx.Err() != nil {
			t.Fatalf("the audit trail of %s never met the condition; it holds %d events", resource, len(evs))
		}
	}
}

// OfType returns the payloads of the events of type typ.
func OfType[T any](t testing.TB, evs []schemas.Event, typ string) []T {
	t.Helper()
	var out []T
	for _, ev := range evs {
		if ev.Type == typ {
			var p T
			if err := json.Unmarshal(ev.Payload, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
	}
	return out
}

// HasType reports whether an event of type typ (whose payload match accepts, when given)
// is in evs.
func HasType(evs []schemas.Event, typ string, match func(json.RawMessage) bool) bool {
	for _, ev := range evs {
		if ev.Type == typ && (match == nil || match(ev.Payload)) {
			return true
		}
	}
	return false
}
