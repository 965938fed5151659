package seal

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// What an outside reviewer did to the first version of Supersede, with a proxy's NATS
// credentials (publish to any audit subject; ClickHouse's ReplacingMergeTree keeps the
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
