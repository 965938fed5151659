package seal

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// What an outside reviewer did to the first version of Supersede, with a proxy's NATS
// credentials (publish to any audit subject; before migration 7 the store kept the
// later of two rows with the same session, position and id). Each must be reported.

// A session its gateway ended and sealed (g1..g7), truncated: rows 4..7 replaced by
// session.sealed rows chained to a forged gateway_lost end at 3; the sweeper then ends the
// session after g3. Verify must not come out clean.
func TestSupersedeAttackTruncateASealedSession(t *testing.T) {
	k, keys := testKey(t)
	tr := &trail{t: t}
	g1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	g2 := tr.add("g", &g1, stmt(1))
	g3 := tr.add("g", &g2, &schemas.DbQueryDone{QueryID: 1, Status: "ok"})
	g4 := tr.add("g", &g3, &schemas.DbQuery{QueryID: 2, SQL: "DROP TABLE payroll", Protocol: "simple"})
	g5 := tr.add("g", &g4, &schemas.DbQueryDone{QueryID: 2, Status: "ok"})
	g6 := tr.add("g", &g5, &schemas.SessionEnd{Reason: "client_closed"})
	tr.add("g", &g6, k.Seal("s1", 6, g6.Hash))
	genuine := tr.sorted(true)
	require.Empty(t, Verify("s1", genuine, keys))

	for _, forgedHash := range []bool{false, true} {
		store := append([]schemas.Event(nil), genuine[:3]...)
		end := schemas.Event{ID: "x-end", Type: schemas.TypeSessionEnd, SessionID: "s1", Seq: 3, Resource: "demo",
			Payload: (&schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2}).AppendJSON(nil), Hash: "H", PrevHash: g2.Hash}
		if forgedHash { // a well-formed end, hashing and chained after g2
			end.Hash, _ = end.ComputeHash()
		}
		store = append(store, end)
		for _, e := range genuine[3:] { // same (session, seq, id): replaces the gateway's row
			r := schemas.Event{ID: e.ID, Type: schemas.TypeSessionSealed, SessionID: "s1", Seq: e.Seq, Resource: "demo", Payload: []byte(`{}`), PrevHash: end.Hash}
			r.Hash, _ = r.ComputeHash()
			store = append(store, r)
		}
		w4 := schemas.Event{ID: "w-end", Type: schemas.TypeSessionEnd, SessionID: "s1", Seq: 4, Resource: "demo", PrevHash: g3.Hash,
			Payload: (&schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 3}).AppendJSON(nil)}
		w4.Hash, _ = w4.ComputeHash()
		w5 := schemas.Event{ID: "w-seal", Type: schemas.TypeSessionSealed, SessionID: "s1", Seq: 5, Resource: "demo", PrevHash: w4.Hash,
			Payload: k.Seal("s1", 4, w4.Hash).AppendJSON(nil)}
		w5.Hash, _ = w5.ComputeHash()
		store = append(store, w4, w5)
		sortStore(store, true)

		kept, sup, _ := Supersede("s1", store, keys, alive(false))
		require.Empty(t, sup, "nothing the gateway signed continues past the forged end")
		require.NotEmpty(t, Verify("s1", kept, keys), "the truncation is reported")
	}
}

// An event appended to a session the sweeper ended and sealed, chained after its last
// event (the chain has no key), then a second sweeper's end: the appended completion has
// no signature of the gateway's, so the first end stands and the append is reported.
func TestSupersedeAttackAppendToASweptSession(t *testing.T) {
	k, keys := testKey(t)
	tr := &trail{t: t}
	g1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	g2 := tr.add("g", &g1, &schemas.DbQuery{QueryID: 1, SQL: "DROP TABLE payroll", Protocol: "simple"})
	w3 := tr.add("w", &g2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	tr.add("w", &w3, k.Seal("s1", 3, w3.Hash))
	forged := tr.add("g", &g2, &schemas.DbQueryDone{QueryID: 1, Status: "error"})
	w4 := tr.add("w", &forged, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 3})
	tr.add("w", &w4, k.Seal("s1", 4, w4.Hash))
	kept, sup, _ := Supersede("s1", tr.sorted(true), keys, alive(false))
	require.Empty(t, sup, "the sweeper's own seal proves nothing of the gateway's")
	require.Contains(t, kinds(Verify("s1", kept, keys)), "duplicate")
}

// Two forged rows far past the end (a seal listed before "its" end) must not set aside a
// genuine sweeper's end that nothing reaches.
func TestSupersedeAttackForgedRowsFarAhead(t *testing.T) {
	k, keys := testKey(t)
	tr, _ := swept(t, k)
	store := tr.sorted(true)
	store = append(store,
		schemas.Event{ID: "a", Type: schemas.TypeSessionSealed, SessionID: "s1", Seq: 100, Payload: []byte(`{}`), PrevHash: "H"},
		schemas.Event{ID: "b", Type: schemas.TypeSessionEnd, SessionID: "s1", Seq: 100, Payload: []byte(`{"reason":"gateway_lost"}`), Hash: "H"})
	kept, sup, _ := Supersede("s1", store, keys, alive(false))
	require.Empty(t, sup)
	require.Len(t, kept, 6)
	require.NotEmpty(t, Verify("s1", kept, keys))
}

// An end whose payload another reader could read otherwise (a JSON key in another case,
// a second reason) is not the sweeper's: it is never set aside.
func TestSupersedeAttackAmbiguousReason(t *testing.T) {
	k, keys := testKey(t)
	for _, payload := range []string{`{"Reason":"gateway_lost","last_seq":2,"statements":0,"denied":0}`,
		`{"reason":"client_closed","reason":"gateway_lost","last_seq":2,"statements":0,"denied":0}`,
		`{"reason" : "gateway_lost","last_seq":2,"statements":0,"denied":0}`} {
		tr := &trail{t: t}
		e1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
		e2 := tr.add("g", &e1, stmt(1))
		end := schemas.Event{ID: "wx", Type: schemas.TypeSessionEnd, SessionID: "s1", Seq: 3, Resource: "demo", PrevHash: e2.Hash, Payload: []byte(payload)}
		end.Hash, _ = end.ComputeHash()
		tr.evs = append(tr.evs, end)
		g3 := tr.add("g", &e2, stmt(2))
		g4 := tr.add("g", &g3, &schemas.SessionEnd{Reason: "client_closed"})
		tr.add("g", &g4, k.Seal("s1", 4, g4.Hash))
		kept, sup, _ := Supersede("s1", tr.sorted(true), keys, alive(true))
		require.Empty(t, sup, payload)
		require.Contains(t, kinds(Verify("s1", kept, keys)), "duplicate", payload)
	}
}

// The second review's attacks, each to be reported.

// Events chained past the point the gateway's restart attested, by someone without the key:
// the sweeper's end is superseded up to the signed point, and the rest is reported once the
// gateway is gone (while it lives, its session may go on past what it signed so far).
func TestSupersedeAttackEventsPastTheSignedPoint(t *testing.T) {
	k, keys := testKey(t)
	tr, e2 := swept(t, k)
	g3 := tr.add("g", &e2, stmt(2))
	g4 := tr.add("g", &g3, stmt(3))
	tr.add("g", nil, k.Attest("s1", 4, g4.Hash))
	x5 := tr.add("x", &g4, &schemas.DbQueryDone{QueryID: 3, Status: "ok"})
	x6 := tr.add("x", &x5, &schemas.DbQuery{QueryID: 4, SQL: "select 'nothing to see'", Protocol: "simple"})
	_, sup, problems := Supersede("s1", tr.sorted(false), keys, alive(false))
	require.Equal(t, []Superseded{{Seq: 3, Signed: 4, SignedHash: g4.Hash}}, sup)
	require.Equal(t, []string{"unsigned"}, kinds(problems))
	require.Equal(t, uint64(5), problems[0].Seq)
	_, _, problems = Supersede("s1", tr.sorted(false), keys, alive(true))
	require.Empty(t, problems, "a live gateway's session goes on")

	// Even sealed by a sweeper's end after them, they stay unsigned.
	w7 := tr.add("w", &x6, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 6})
	tr.add("w", &w7, k.Seal("s1", 7, w7.Hash))
	_, _, problems = Supersede("s1", tr.sorted(false), keys, alive(false))
	require.Equal(t, []string{"unsigned"}, kinds(problems))
}

// A forged copy of the sweeper's end at its position is not the gateway's branch: it may
// not use the sweeper's own seal to set the real end aside.
func TestSupersedeAttackForgedSweeperEnd(t *testing.T) {
	k, keys := testKey(t)
	tr, e2 := swept(t, k)
	tr.add("x", &e2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	kept, sup, _ := Supersede("s1", tr.sorted(true), keys, alive(false))
	require.Empty(t, sup)
	require.Contains(t, kinds(Verify("s1", kept, keys)), "duplicate")
}

// Thousands of forged ends at one position over a long chain: Supersede's work stays
// linear (each event hashed once, each branch walked once). Quadratic, this would take
// hours; there is no time bound here, the suite's timeout is the bound.
func TestSupersedeAttackManyForgedEnds(t *testing.T) {
	_, keys := testKey(t)
	const n = 20000
	mk := func(id string, prev *schemas.Event, p schemas.Payload) schemas.Event {
		e := schemas.Event{ID: id, Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: time.Unix(1, 0).UTC(), SessionID: "s1", Seq: 1, Resource: "demo", Payload: p.AppendJSON(nil)}
		if prev != nil {
			e.Seq, e.PrevHash = prev.Seq+1, prev.Hash
		}
		e.Hash, _ = e.ComputeHash()
		return e
	}
	e1 := mk("a0", nil, &schemas.SessionStart{Gateway: "boot-1"})
	e2 := mk("a1", &e1, stmt(1))
	evs := []schemas.Event{e1, e2}
	prev := e2
	for i := range n {
		g := mk(fmt.Sprintf("a%07d", i+2), &prev, stmt(uint64(i+2)))
		evs = append(evs, g)
		prev = g
	}
	for i := range n {
		evs = append(evs, mk(fmt.Sprintf("z%07d", i), &e2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2}))
	}
	sortStore(evs, false)
	kept, sup, _ := Supersede("s1", evs, keys, alive(false))
	require.Empty(t, sup, "nothing signed")
	require.Len(t, kept, len(evs))
}

// Signatures do not travel: an attestation for another session or position, a seal's
// signature as an attestation, an attestation's as a seal.
func TestSupersedeAttackReplayedSignatures(t *testing.T) {
	k, keys := testKey(t)
	for name, mk := range map[string]func(g4 schemas.Event) schemas.Payload{
		"other session":  func(g4 schemas.Event) schemas.Payload { return k.Attest("s2", 4, g4.Hash) },
		"other position": func(g4 schemas.Event) schemas.Payload { return k.Attest("s1", 5, g4.Hash) },
		"seal as attestation": func(g4 schemas.Event) schemas.Payload {
			s := k.Seal("s1", 4, g4.Hash)
			return &schemas.SessionAttested{Events: s.Events, LastHash: s.LastHash, KeyID: s.KeyID, Signature: s.Signature}
		},
	} {
		tr, e2 := swept(t, k)
		g3 := tr.add("g", &e2, stmt(2))
		g4 := tr.add("g", &g3, stmt(3))
		tr.add("g", nil, mk(g4))
		kept, sup, _ := Supersede("s1", tr.sorted(false), keys, alive(false))
		require.Empty(t, sup, name)
		require.Contains(t, kinds(Verify("s1", kept, keys)), "duplicate", name)
	}
	tr, e2 := swept(t, k)
	g3 := tr.add("g", &e2, stmt(2))
	g4 := tr.add("g", &g3, stmt(3))
	a := k.Attest("s1", 4, g4.Hash)
	tr.add("g", &g4, &schemas.SessionSealed{Events: a.Events, LastHash: a.LastHash, KeyID: a.KeyID, Signature: a.Signature})
	kept, sup, _ := Supersede("s1", tr.sorted(false), keys, alive(false))
	require.Empty(t, sup)
	require.NotEmpty(t, Verify("s1", kept, keys))
}

// Odd positions (the largest sequence number, whose successor wraps; seq-0 events that are
// not attestations; no start) neither panic nor loop.
func TestSupersedeAttackOddPositions(t *testing.T) {
	k, keys := testKey(t)
	const most = ^uint64(0)
	mk := func(id string, seq uint64, prev string, p schemas.Payload) schemas.Event {
		e := schemas.Event{ID: id, Type: p.EventType(), SessionID: "s1", Seq: seq, PrevHash: prev, Payload: p.AppendJSON(nil)}
		e.Hash, _ = e.ComputeHash()
		return e
	}
	a := mk("a", most-1, "", stmt(1))
	end := mk("b", most, a.Hash, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: most - 1})
	fork := mk("c", most, a.Hash, stmt(2))
	s := mk("d", 0, end.Hash, k.Seal("s1", most, end.Hash))
	z := mk("e", 0, fork.Hash, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: most})
	evs := []schemas.Event{s, z, a, end, fork}
	for _, al := range []bool{false, true} {
		kept, _, _ := Supersede("s1", evs, keys, alive(al))
		require.NotEmpty(t, Verify("s1", kept, keys))
	}
}
