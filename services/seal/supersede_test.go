package seal

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// trail builds one session's events the way the gateway and the sweeper write them.
type trail struct {
	t    *testing.T
	evs  []schemas.Event
	tail map[string]schemas.Event // the last event each writer chained after
}

func (tr *trail) add(writer string, after *schemas.Event, p schemas.Payload) schemas.Event {
	tr.t.Helper()
	prev, seq := "", uint64(1)
	if after != nil {
		prev, seq = after.Hash, after.Seq+1
	}
	e := schemas.Event{ID: writer + string(rune('a'+len(tr.evs))), Type: p.EventType(), Code: schemas.Codes[p.EventType()],
		Time: time.Unix(int64(len(tr.evs)), 0).UTC(), SessionID: "s1", Seq: seq, Resource: "demo", PrevHash: prev, Payload: p.AppendJSON(nil)}
	h, err := e.ComputeHash()
	require.NoError(tr.t, err)
	e.Hash = h
	tr.evs = append(tr.evs, e)
	return e
}

// sorted is the trail as the store gives it: by sequence number, the sweeper's events
// first or last among equals as asked.
func (tr *trail) sorted(sweeperFirst bool) []schemas.Event {
	out := append([]schemas.Event(nil), tr.evs...)
	less := func(a, b schemas.Event) bool {
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		return (a.ID[0] == 'w') == sweeperFirst && a.ID[0] != b.ID[0]
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && less(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func stmt(n uint64) schemas.Payload {
	return &schemas.DbQuery{QueryID: n, SQL: "select 1", Protocol: "simple"}
}

// The sweeper ends a session whose gateway went silent; the gateway was only cut off, and
// its events (statements, its own end and seal) arrive afterwards with the same and later
// sequence numbers. Verified as stored, that is a duplicate and an altered chain; with the
// sweeper's end superseded, the trail is the gateway's and verifies clean.
func TestSupersedeGatewayOvertakesTheSweeper(t *testing.T) {
	k, err := LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	keys := map[string]ed25519.PublicKey{k.ID: k.Private.Public().(ed25519.PublicKey)}
	tr := &trail{t: t}
	e1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	e2 := tr.add("g", &e1, stmt(1))
	// The sweeper ends it after what the store had (e2) and seals that.
	w3 := tr.add("w", &e2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	tr.add("w", &w3, k.Seal("s1", 3, w3.Hash))
	// The gateway comes back: two statements, its end, its seal.
	g3 := tr.add("g", &e2, stmt(2))
	g4 := tr.add("g", &g3, stmt(3))
	g5 := tr.add("g", &g4, &schemas.SessionEnd{Reason: "client_closed"})
	tr.add("g", &g5, k.Seal("s1", 5, g5.Hash))

	for _, first := range []bool{true, false} {
		stored := tr.sorted(first)
		require.NotEmpty(t, Verify("s1", stored, keys), "as stored, the two writers collide")
		kept, sup := Supersede(stored)
		require.Equal(t, []Superseded{{Seq: 3, LastOf: 6}}, sup)
		require.Len(t, kept, 6)
		require.Empty(t, Verify("s1", kept, keys))
		p := sup[0].Problem("s1")
		require.Equal(t, "superseded", p.Kind)
		require.Contains(t, p.Detail, "gateway_lost at event 3")
	}
}

// A sweeper's end that nothing of the gateway's reaches ends the session: it stays, and a
// second end after a restart's replayed events supersedes only the first.
func TestSupersedeKeepsTheEndNothingOvertook(t *testing.T) {
	k, err := LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	keys := map[string]ed25519.PublicKey{k.ID: k.Private.Public().(ed25519.PublicKey)}
	tr := &trail{t: t}
	e1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	e2 := tr.add("g", &e1, stmt(1))
	w3 := tr.add("w", &e2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	tr.add("w", &w3, k.Seal("s1", 3, w3.Hash))

	kept, sup := Supersede(tr.sorted(true))
	require.Empty(t, sup)
	require.Len(t, kept, 4)
	require.Empty(t, Verify("s1", kept, keys))

	// The killed gateway's restart publishes two events its spool held; the sweeper ends
	// the session again after them.
	g3 := tr.add("g", &e2, stmt(2))
	g4 := tr.add("g", &g3, stmt(3))
	w5 := tr.add("w", &g4, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 4})
	tr.add("w", &w5, k.Seal("s1", 5, w5.Hash))
	kept, sup = Supersede(tr.sorted(false))
	require.Equal(t, []Superseded{{Seq: 3, LastOf: 4}}, sup)
	require.Empty(t, Verify("s1", kept, keys))
	require.Equal(t, w5.ID, kept[len(kept)-2].ID, "the second end ends the session")

	// The gateway's own end at the very position of the sweeper's: the gateway's stands.
	tr2 := &trail{t: t}
	a1 := tr2.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	a2 := tr2.add("g", &a1, stmt(1))
	x3 := tr2.add("w", &a2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	tr2.add("w", &x3, k.Seal("s1", 3, x3.Hash))
	a3 := tr2.add("g", &a2, &schemas.SessionEnd{Reason: "client_closed"})
	tr2.add("g", &a3, k.Seal("s1", 3, a3.Hash))
	kept, sup = Supersede(tr2.sorted(true))
	require.Len(t, sup, 1)
	require.Empty(t, Verify("s1", kept, keys))
	require.Equal(t, a3.ID, kept[2].ID)
}

// Superseding does not hide tampering: an event slipped in past a sweeper's end that does
// not chain from the gateway's events is still reported.
func TestSupersedeHidesNoTampering(t *testing.T) {
	k, err := LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	keys := map[string]ed25519.PublicKey{k.ID: k.Private.Public().(ed25519.PublicKey)}
	tr := &trail{t: t}
	e1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	e2 := tr.add("g", &e1, stmt(1))
	w3 := tr.add("w", &e2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	tr.add("w", &w3, k.Seal("s1", 3, w3.Hash))
	forged := tr.add("g", &e1, stmt(9)) // chained after the start, not after event 2,
	forged.Seq = 3                      // numbered to follow it, and hashed as such
	h, err := forged.ComputeHash()
	require.NoError(t, err)
	forged.Hash = h
	tr.evs[len(tr.evs)-1] = forged
	kept, sup := Supersede(tr.sorted(true))
	require.Len(t, sup, 1)
	kinds := []string{}
	for _, p := range Verify("s1", kept, keys) {
		kinds = append(kinds, p.Kind)
	}
	require.Equal(t, []string{"reordered"}, kinds)
}
