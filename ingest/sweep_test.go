package ingest_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/seal"
)

// gatewayEvents writes a session's events as its gateway does: chained, numbered, now.
type gatewayEvents struct {
	t    *testing.T
	h    *harness
	id   string
	last *schemas.Event
}

func (g *gatewayEvents) publish(ps ...schemas.Payload) {
	g.t.Helper()
	var msg []byte
	for _, p := range ps {
		e := schemas.Event{ID: g.id + "-" + time.Now().Format("150405.000000000"), Type: p.EventType(), Code: schemas.Codes[p.EventType()],
			Time: time.Now().UTC().Truncate(time.Microsecond), SessionID: g.id, Seq: 1, Resource: "demo", PolicyRevision: 1, Payload: p.AppendJSON(nil)}
		if g.last != nil {
			e.Seq, e.PrevHash = g.last.Seq+1, g.last.Hash
		}
		h, err := e.ComputeHash()
		require.NoError(g.t, err)
		e.Hash = h
		g.last = &e
		if len(msg) > 0 {
			msg = append(msg, '\n')
		}
		msg = e.AppendJSON(msg)
	}
	g.h.publish(g.t, "demo", g.id, msg)
}

// attest publishes the gateway's attestation of its events so far (what a restart does for
// a killed predecessor's sessions).
func (g *gatewayEvents) attest(key *seal.Key) {
	g.t.Helper()
	p := key.Attest(g.id, g.last.Seq, g.last.Hash)
	e := schemas.Event{ID: g.id + "-attest-" + time.Now().Format("150405.000000000"), Type: p.EventType(), Code: schemas.Codes[p.EventType()],
		Time: time.Now().UTC().Truncate(time.Microsecond), SessionID: g.id, Resource: "demo", Payload: p.AppendJSON(nil)}
	h, err := e.ComputeHash()
	require.NoError(g.t, err)
	e.Hash = h
	g.h.publish(g.t, "demo", g.id, e.AppendJSON(nil))
}

func (h *harness) ends(t *testing.T, session string) []schemas.SessionEnd {
	rows, err := h.ch.Query(context.Background(), "SELECT payload FROM gh.events FINAL WHERE session_id = ? AND type = ? ORDER BY seq", session, schemas.TypeSessionEnd)
	require.NoError(t, err)
	defer rows.Close()
	var out []schemas.SessionEnd
	for rows.Next() {
		var p string
		require.NoError(t, rows.Scan(&p))
		var e schemas.SessionEnd
		require.NoError(t, json.Unmarshal([]byte(p), &e))
		out = append(out, e)
	}
	return out
}

// A gateway cut off past audit.gateway_timeout has its sessions ended by the sweeper; when
// it comes back, its events overtake that end. While the gateway lives its session is its
// own; once it ends and seals it, the sweeper's end is superseded. A session whose
// gateway died after the cut is left ended until a restart attests what its spool held:
// then it is open again and ended once more after its new last event. Verify reports
// every sweeper's end so overtaken as superseded, and no problem.
func TestSweeperEndsAgainWhatItsGatewayOvertook(t *testing.T) {
	ctx := context.Background()
	h := start(t)
	sw, key, keys, gws := newSweeper(t, h)
	stmt := func(n uint64) []schemas.Payload { // a statement and its completion
		return []schemas.Payload{&schemas.DbQuery{QueryID: n, SQL: "select 1", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: n, Status: "ok"}}
	}

	// Two sessions of gateway boot-1, cut off: "back" comes back and ends itself,
	// "killed" has its spool published by a restart and is never ended by its gateway.
	back := &gatewayEvents{t: t, h: h, id: "back"}
	killed := &gatewayEvents{t: t, h: h, id: "killed"}
	for _, g := range []*gatewayEvents{back, killed} {
		g.publish(append([]schemas.Payload{&schemas.SessionStart{Gateway: "boot-1"}}, stmt(1)...)...)
	}
	sweepUntil := func(want int) {
		t.Helper()
		require.Eventually(t, func() bool {
			n, err := sw.Sweep(ctx)
			require.NoError(t, err)
			return n == want
		}, 30*time.Second, 50*time.Millisecond)
	}
	sweepUntil(2)
	require.Eventually(t, func() bool { return len(h.ends(t, "back")) == 1 && len(h.ends(t, "killed")) == 1 }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, uint64(3), h.ends(t, "back")[0].LastSeq)
	n, err := sw.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "ended sessions are not ended twice")

	// The gateway is back (its key refreshed): its events overtake the sweeper's ends,
	// and the sessions are not ended again while it lives.
	_, err = gws.Put(ctx, "boot-1", []byte(`{}`))
	require.NoError(t, err)
	back.publish(append(stmt(2), stmt(3)...)...)
	killed.publish(stmt(2)...)
	require.Eventually(t, func() bool {
		forked, err := ingest.ForkedSessions(ctx, h.ch, "gh", time.Hour)
		require.NoError(t, err)
		return len(forked) == 2
	}, 30*time.Second, 20*time.Millisecond, "the gateway's events meet the sweeper's ends")
	n, err = sw.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a live gateway's sessions are its own")
	// "back" ends itself and seals; "killed"'s gateway dies for good.
	end := &schemas.SessionEnd{Reason: "client_closed"}
	back.publish(end)
	back.publish(key.Seal("back", back.last.Seq, back.last.Hash))
	require.NoError(t, gws.Purge(ctx, "boot-1"))
	require.Eventually(t, func() bool { return len(h.ends(t, "back")) == 2 }, 30*time.Second, 20*time.Millisecond)
	h.caughtUp(t) // Sweep looks at the store
	n, err = sw.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "events past the end that nothing of the gateway's signs leave the end standing")
	v, err := query.VerifySessions(ctx, h.ch, "gh", []string{"killed"}, keys, func(ctx context.Context, gw string) (bool, error) { return bus.Alive(ctx, gws, gw) })
	require.NoError(t, err)
	require.Contains(t, kindsOf(v.Problems), "duplicate", "and verify reports them")
	killed.attest(key) // the restart publishes its spool and attests it
	sweepUntil(1)
	require.Eventually(t, func() bool { return len(h.ends(t, "killed")) == 2 }, 30*time.Second, 20*time.Millisecond)
	ends := h.ends(t, "killed")
	require.Equal(t, seal.ReasonGatewayLost, ends[1].Reason)
	require.Equal(t, uint64(5), ends[1].LastSeq, "ended after the gateway's last event")
	require.Len(t, h.ends(t, "back"), 2, "the gateway's own end stands: not ended again")
	n, err = sw.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n)

	v, err = query.VerifySessions(ctx, h.ch, "gh", []string{"back", "killed"}, keys, func(ctx context.Context, gw string) (bool, error) { return bus.Alive(ctx, gws, gw) })
	require.NoError(t, err)
	require.Empty(t, v.Problems)
	require.Len(t, v.Superseded, 2)
	for _, p := range v.Superseded {
		require.Equal(t, uint64(4), p.Seq, "%+v", p)
	}
}

func kindsOf(ps []seal.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Kind)
	}
	return out
}

// caughtUp waits until ingest has stored everything published (the sweeper looks only then).
func (h *harness) caughtUp(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := h.js.Consumer(context.Background(), bus.StreamAudit, ingest.ConsumerName)
		if err != nil {
			return false
		}
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	}, 30*time.Second, 20*time.Millisecond)
}

// waitEvents waits until session id has n events in the store, and returns them.
func (h *harness) waitEvents(t *testing.T, id string, n int) []schemas.Event {
	t.Helper()
	var evs []schemas.Event
	require.Eventually(t, func() bool {
		var err error
		evs, err = query.ReadSession(context.Background(), h.ch, "gh", id)
		require.NoError(t, err)
		return len(evs) == n
	}, 30*time.Second, 20*time.Millisecond, "%s: %d events", id, n)
	return evs
}

// newSweeper is a sweeper on h with a fresh audit key (its seals and attestations are the
// ones verify accepts), and the gh_gateways bucket it reads.
func newSweeper(t *testing.T, h *harness) (*ingest.Sweeper, *seal.Key, map[string]ed25519.PublicKey, jetstream.KeyValue) {
	gws, err := bus.OpenGateways(context.Background(), h.js, time.Minute)
	require.NoError(t, err)
	key, err := seal.LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	keys := map[string]ed25519.PublicKey{key.ID: key.Private.Public().(ed25519.PublicKey)}
	return &ingest.Sweeper{CH: h.ch, Database: "gh", JS: h.js, Gateways: gws, Key: key, Keys: keys, Interval: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, key, keys, gws
}
