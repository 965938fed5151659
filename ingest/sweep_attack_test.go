package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/seal"
)

// What an outside reviewer did, end to end, with a proxy's NATS credentials only (publish
// to any audit subject): each attack must be reported by verify, and the sweeper must not
// seal what the attacker wrote.
func TestSweeperAttacksAreReported(t *testing.T) {
	ctx := context.Background()
	h := start(t)
	sw, key, keys, gws := newSweeper(t, h)
	alive := func(ctx context.Context, gw string) (bool, error) { return bus.Alive(ctx, gws, gw) }
	read := func(id string, n int) []schemas.Event { return h.waitEvents(t, id, n) }
	caughtUp := func() { h.caughtUp(t) }

	// 1. Truncation of a session its gateway ended and sealed: a well-formed gateway_lost
	// end at 3, and rows 4..7 published again (same session, position and id) as
	// session.sealed rows chained to it.
	victim := &gatewayEvents{t: t, h: h, id: "victim"}
	victim.publish(&schemas.SessionStart{Gateway: "boot-1"},
		&schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 1, Status: "ok"},
		&schemas.DbQuery{QueryID: 2, SQL: "DROP TABLE payroll", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 2, Status: "ok"},
		&schemas.SessionEnd{Reason: "client_closed"})
	victim.publish(key.Seal("victim", victim.last.Seq, victim.last.Hash))
	stored := read("victim", 7)
	end := schemas.Event{ID: "x-end", Type: schemas.TypeSessionEnd, Time: time.Now().UTC().Truncate(time.Microsecond), SessionID: "victim", Seq: 3,
		Resource: "demo", PrevHash: stored[1].Hash, Payload: (&schemas.SessionEnd{Reason: seal.ReasonGatewayLost, LastSeq: 2}).AppendJSON(nil)}
	end.Hash, _ = end.ComputeHash()
	msg := end.AppendJSON(nil)
	for _, e := range stored[3:] {
		r := schemas.Event{ID: e.ID, Type: schemas.TypeSessionSealed, Time: e.Time, SessionID: "victim", Seq: e.Seq, Resource: "demo", Payload: []byte(`{}`), PrevHash: end.Hash}
		r.Hash, _ = r.ComputeHash()
		msg = r.AppendJSON(append(msg, '\n'))
	}
	h.publish(t, "demo", "victim", msg)
	read("victim", 8)
	require.NoError(t, h.ch.Exec(ctx, "OPTIMIZE TABLE gh.events FINAL")) // the replaced rows merged away, as a background merge would

	// 2. A completion appended to a session the sweeper ended while its statement ran.
	cut := &gatewayEvents{t: t, h: h, id: "cut"}
	cut.publish(&schemas.SessionStart{Gateway: "boot-1"}, &schemas.DbQuery{QueryID: 1, SQL: "DROP TABLE payroll", Protocol: "simple"})
	read("cut", 2)
	caughtUp()
	n, err := sw.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the dead gateway's open session is ended")
	read("cut", 4)
	cut.publish(&schemas.DbQueryDone{QueryID: 1, Status: "error"})

	// 3. An end another reader would read otherwise, on a dead gateway's session.
	dead := &gatewayEvents{t: t, h: h, id: "dead"}
	dead.publish(&schemas.SessionStart{Gateway: "boot-1"}, &schemas.DbQuery{QueryID: 1, SQL: "DROP TABLE payroll", Protocol: "simple"})
	odd := schemas.Event{ID: "x-odd", Type: schemas.TypeSessionEnd, Time: time.Now().UTC().Truncate(time.Microsecond), SessionID: "dead", Seq: 3,
		Resource: "demo", PrevHash: dead.last.Hash, Payload: []byte(`{"Reason":"gateway_lost","last_seq":2}`)}
	odd.Hash, _ = odd.ComputeHash()
	h.publish(t, "demo", "dead", odd.AppendJSON(nil))
	read("dead", 3)
	read("cut", 5)
	caughtUp()

	for range 3 {
		n, err := sw.Sweep(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "the sweeper seals nothing the attacker wrote")
	}
	v, err := query.VerifySessions(ctx, h.ch, "gh", []string{"victim", "cut", "dead"}, keys, alive)
	require.NoError(t, err)
	bySession := map[string][]string{}
	for _, p := range v.Problems {
		bySession[p.Session] = append(bySession[p.Session], p.Kind)
	}
	// The victim's rows 4..7 are its gateway's (the store keeps the first row of a key): the
	// forged end at 3 is the one row left of the attack, set aside as an end the gateway's
	// own sealed events overtook; nothing of the session is lost or reported altered.
	require.Empty(t, bySession["victim"], "%+v", v.Problems)
	require.Len(t, v.Superseded, 1)
	require.Equal(t, "victim", v.Superseded[0].Session)
	require.Subset(t, read("victim", 8), stored)
	require.Contains(t, bySession["cut"], "duplicate", "%+v", v.Problems)
	require.Contains(t, bySession["dead"], "unsealed", "%+v", v.Problems)
}

// The second review's attacks, end to end: rows of a session its gateway sealed replaced
// without an end (before any merge, so the table holds both: not reopened); a forged start naming a
// gateway that cannot be a key; a session of attestations only; the sweeper's message id
// taken first.
func TestSweeperAttacksSecondReview(t *testing.T) {
	ctx := context.Background()
	h := start(t)
	sw, key, keys, gws := newSweeper(t, h)
	alive := func(ctx context.Context, gw string) (bool, error) { return bus.Alive(ctx, gws, gw) }
	count := func(id string, n int) []schemas.Event { return h.waitEvents(t, id, n) }
	caughtUp := func() { h.caughtUp(t) }
	publishEvent := func(e schemas.Event, msgID string) {
		t.Helper()
		e.Hash, _ = e.ComputeHash()
		m := nats.NewMsg(bus.AuditSubject("demo", e.SessionID, "batch"))
		m.Data = e.AppendJSON(nil)
		if msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		_, err := h.js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}

	victim := &gatewayEvents{t: t, h: h, id: "victim"}
	victim.publish(&schemas.SessionStart{Gateway: "boot-1"},
		&schemas.DbQuery{QueryID: 1, SQL: "DROP TABLE payroll", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 1, Status: "ok"},
		&schemas.SessionEnd{Reason: "client_closed", Statements: 1})
	victim.publish(key.Seal("victim", victim.last.Seq, victim.last.Hash))
	genuine := count("victim", 5)
	prev := genuine[0]
	var msg []byte
	for i, p := range []schemas.Payload{
		&schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 1, Status: "ok"},
		&schemas.DbQuery{QueryID: 2, SQL: "select 2", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 2, Status: "ok"}} {
		g := genuine[1+i]
		r := schemas.Event{ID: g.ID, Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: g.Time, SessionID: "victim",
			Seq: g.Seq, Resource: g.Resource, PolicyRevision: g.PolicyRevision, PrevHash: prev.Hash, Payload: p.AppendJSON(nil)}
		r.Hash, _ = r.ComputeHash()
		msg = r.AppendJSON(append(msg, '\n'))
		prev = r
	}
	h.publish(t, "demo", "victim", msg[1:])

	now := time.Now().UTC().Truncate(time.Microsecond)
	publishEvent(schemas.Event{ID: "odd-1", Type: schemas.TypeSessionStart, Time: now, SessionID: "odd", Seq: 1, Resource: "demo",
		Payload: (&schemas.SessionStart{Gateway: "no such gateway"}).AppendJSON(nil)}, "")
	a := key.Attest("ghost", 1, "x")
	publishEvent(schemas.Event{ID: "ghost-a", Type: a.EventType(), Time: now, SessionID: "ghost", Resource: "demo", Payload: a.AppendJSON(nil)}, "")

	squat := &gatewayEvents{t: t, h: h, id: "squat"}
	squat.publish(&schemas.SessionStart{Gateway: "boot-1"}, &schemas.DbQuery{QueryID: 1, SQL: "DROP TABLE payroll", Protocol: "simple"})
	publishEvent(schemas.Event{ID: "other-1", Type: schemas.TypeSessionStart, Time: now, SessionID: "other", Seq: 1, Resource: "demo",
		Payload: (&schemas.SessionStart{Gateway: "boot-2"}).AppendJSON(nil)}, fmt.Sprintf("gateway-lost-squat-2-%.16s", squat.last.Hash))
	count("squat", 2)
	caughtUp()

	// "odd" (a gateway that cannot be a key: gone) and "other" (boot-2: gone) are ended;
	// the rewritten victim is not reopened; squat's end is taken as a duplicate, not counted.
	n, err := sw.Sweep(ctx)
	require.NoError(t, err, "one odd session does not stop the sweep")
	require.Equal(t, 2, n)
	require.Empty(t, h.ends(t, "squat"), "its id was taken: left open, verify reports it as cut")
	count("victim", 5)

	v, err := query.VerifySessions(ctx, h.ch, "gh", []string{"victim", "odd", "ghost", "squat"}, keys, alive)
	require.NoError(t, err, "nor does it stop verify")
	bySession := map[string][]string{}
	for _, p := range v.Problems {
		bySession[p.Session] = append(bySession[p.Session], p.Kind)
	}
	// Every row of the victim after its start published again, its end and seal included:
	// the store keeps the first of two rows with the same key, so the session reads as its
	// gateway sealed it, and verify reports each later row as shadowed, nothing else
	// (before this, the later row won: verify said cut).
	require.Equal(t, []string{"shadowed", "shadowed", "shadowed", "shadowed"}, bySession["victim"], "%+v", v.Problems)
	require.Equal(t, genuine, count("victim", 5))
	require.Contains(t, bySession["ghost"], "missing", "%+v", v.Problems)
	require.Contains(t, bySession["squat"], "cut", "%+v", v.Problems)
	require.Empty(t, v.Superseded)
}
