package seal

import (
	"crypto/ed25519"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// trail builds one session's events the way the gateway and the sweeper write them.
type trail struct {
	t   *testing.T
	evs []schemas.Event
}

func (tr *trail) add(writer string, after *schemas.Event, p schemas.Payload) schemas.Event {
	tr.t.Helper()
	prev, seq := "", uint64(1)
	if after != nil {
		prev, seq = after.Hash, after.Seq+1
	}
	if p.EventType() == schemas.TypeSessionAttested {
		prev, seq = "", 0
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
	out := slices.Clone(tr.evs)
	sortStore(out, sweeperFirst)
	return out
}

func sortStore(evs []schemas.Event, sweeperFirst bool) {
	slices.SortStableFunc(evs, func(a, b schemas.Event) int {
		if a.Seq != b.Seq {
			return int(a.Seq) - int(b.Seq)
		}
		if (a.ID[0] == 'w') == (b.ID[0] == 'w') {
			return 0
		}
		if (a.ID[0] == 'w') == sweeperFirst {
			return -1
		}
		return 1
	})
}

func stmt(n uint64) schemas.Payload {
	return &schemas.DbQuery{QueryID: n, SQL: "select 1", Protocol: "simple"}
}

func testKey(t *testing.T) (*Key, map[string]ed25519.PublicKey) {
	k, err := LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	return k, map[string]ed25519.PublicKey{k.ID: k.Private.Public().(ed25519.PublicKey)}
}

func alive(v bool) func() bool { return func() bool { return v } }

func kinds(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Kind)
	}
	return out
}

// swept is a session the sweeper ended after event 2 (start, statement), sealed.
func swept(t *testing.T, k *Key) (tr *trail, e2 schemas.Event) {
	tr = &trail{t: t}
	e1 := tr.add("g", nil, &schemas.SessionStart{Gateway: "boot-1"})
	e2 = tr.add("g", &e1, stmt(1))
	w3 := tr.add("w", &e2, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 2})
	tr.add("w", &w3, k.Seal("s1", 3, w3.Hash))
	return tr, e2
}

// The gateway was only cut off: its statements, its own end and seal arrive after the
// sweeper's end, at the same positions. As stored, that is a duplicate and a broken chain;
// the gateway's sealed branch supersedes the sweeper's end, and the rest verifies clean.
func TestSupersedeGatewayOvertakesTheSweeper(t *testing.T) {
	k, keys := testKey(t)
	tr, e2 := swept(t, k)
	g3 := tr.add("g", &e2, stmt(2))
	g4 := tr.add("g", &g3, stmt(3))
	g5 := tr.add("g", &g4, &schemas.SessionEnd{Reason: "client_closed"})
	tr.add("g", &g5, k.Seal("s1", 5, g5.Hash))
	for _, first := range []bool{true, false} {
		stored := tr.sorted(first)
		require.NotEmpty(t, Verify("s1", stored, keys), "as stored, the two writers collide")
		kept, sup, problems := Supersede("s1", stored, keys, alive(false))
		require.Empty(t, problems)
		require.Equal(t, []Superseded{{Seq: 3, Signed: 5, SignedHash: g5.Hash}}, sup)
		require.Len(t, kept, 6)
		require.Empty(t, Verify("s1", kept, keys))
		p := sup[0].Problem("s1")
		require.Equal(t, "superseded", p.Kind)
		require.Contains(t, p.Detail, "gateway_lost at event 3")
	}
}

// Back from a partition, the gateway's session goes on and is not ended yet: nothing of
// its branch is signed. While the gateway is alive the sweeper's end is set aside without
// a report (the session is live again); once it is gone, the end stands and the events
// past it are reported.
func TestSupersedeUnsignedBranch(t *testing.T) {
	k, keys := testKey(t)
	tr, e2 := swept(t, k)
	tr.add("g", &e2, stmt(2))
	kept, sup, problems := Supersede("s1", tr.sorted(true), keys, alive(true))
	require.Empty(t, problems)
	require.Empty(t, sup, "nothing settled yet")
	require.Len(t, kept, 3)
	require.Empty(t, Verify("s1", kept, keys))

	asked := 0
	kept, sup, _ = Supersede("s1", tr.sorted(true), keys, func() bool { asked++; return false })
	require.Equal(t, 1, asked)
	require.Empty(t, sup)
	require.Len(t, kept, 5)
	require.Contains(t, kinds(Verify("s1", kept, keys)), "duplicate")
}

// A killed gateway's restart publishes what its spool held and attests it: the
// attestation proves the branch, the sweeper's first end is superseded, and its second
// end (after the attested events) ends the session.
func TestSupersedeAttestedBranch(t *testing.T) {
	k, keys := testKey(t)
	tr, e2 := swept(t, k)
	g3 := tr.add("g", &e2, stmt(2))
	g4 := tr.add("g", &g3, stmt(3))
	tr.add("g", nil, k.Attest("s1", 4, g4.Hash))
	w5 := tr.add("w", &g4, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 4})
	tr.add("w", &w5, k.Seal("s1", 5, w5.Hash))
	kept, sup, problems := Supersede("s1", tr.sorted(false), keys, alive(false))
	require.Empty(t, problems)
	require.Equal(t, []Superseded{{Seq: 3, Signed: 4, SignedHash: g4.Hash}}, sup)
	require.Empty(t, Verify("s1", kept, keys))
	require.Equal(t, w5.ID, kept[len(kept)-2].ID, "the second end ends the session")
	for _, e := range kept {
		require.NotEqual(t, schemas.TypeSessionAttested, e.Type, "an attestation is not part of the chain")
	}

	// An attestation by another key, or a seal's signature passed off as one, is refused.
	other, _ := testKey(t)
	for _, bad := range []*schemas.SessionAttested{other.Attest("s1", 4, g4.Hash), func() *schemas.SessionAttested {
		s := k.Seal("s1", 4, g4.Hash)
		return &schemas.SessionAttested{Events: s.Events, LastHash: s.LastHash, KeyID: s.KeyID, Signature: s.Signature}
	}()} {
		tr2, f2 := swept(t, k)
		h3 := tr2.add("g", &f2, stmt(2))
		h4 := tr2.add("g", &h3, stmt(3))
		tr2.add("g", nil, bad)
		w := tr2.add("w", &h4, &schemas.SessionEnd{Reason: ReasonGatewayLost, LastSeq: 4})
		tr2.add("w", &w, k.Seal("s1", 5, w.Hash))
		kept, sup, problems := Supersede("s1", tr2.sorted(false), keys, alive(false))
		require.Equal(t, []string{"bad_seal"}, kinds(problems))
		require.Empty(t, sup)
		require.Contains(t, kinds(Verify("s1", kept, keys)), "duplicate")
	}
}

// A sweeper's end that nothing of the gateway's reaches ends the session; the gateway's
// own end at the very position of the sweeper's, sealed, wins.
func TestSupersedeKeepsTheEndNothingOvertook(t *testing.T) {
	k, keys := testKey(t)
	tr, e2 := swept(t, k)
	kept, sup, problems := Supersede("s1", tr.sorted(true), keys, alive(false))
	require.Empty(t, sup)
	require.Empty(t, problems)
	require.Len(t, kept, 4)
	require.Empty(t, Verify("s1", kept, keys))

	g3 := tr.add("g", &e2, &schemas.SessionEnd{Reason: "client_closed"})
	tr.add("g", &g3, k.Seal("s1", 3, g3.Hash))
	kept, sup, _ = Supersede("s1", tr.sorted(true), keys, alive(false))
	require.Len(t, sup, 1)
	require.Empty(t, Verify("s1", kept, keys))
	require.Equal(t, g3.ID, kept[2].ID)
}
