package seal

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// chain builds a sealed session of n events (the last two: session.end and the seal).
func chain(t *testing.T, k *Key, n int) []schemas.Event {
	t.Helper()
	var evs []schemas.Event
	prev := ""
	for i := 1; i <= n; i++ {
		var p schemas.Payload = &schemas.DbQuery{QueryID: uint64(i), SQL: "select 1", Protocol: "simple"}
		switch i {
		case n - 1:
			p = &schemas.SessionEnd{Reason: "client_closed"}
		case n:
			p = k.Seal("s1", uint64(n-1), prev)
		}
		e := schemas.Event{ID: "e" + string(rune('a'+i)), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: time.Unix(int64(i), 0).UTC(),
			SessionID: "s1", Seq: uint64(i), Resource: "demo", PrevHash: prev, Payload: p.AppendJSON(nil)}
		h, err := e.ComputeHash()
		require.NoError(t, err)
		e.Hash, prev = h, h
		evs = append(evs, e)
	}
	return evs
}

func TestVerifyFindsEachKindOfTampering(t *testing.T) {
	k, err := LoadKey(filepath.Join(t.TempDir(), "k"), true)
	require.NoError(t, err)
	keys := map[string]ed25519.PublicKey{k.ID: k.Private.Public().(ed25519.PublicKey)}
	kinds := func(ps []Problem) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Kind)
		}
		return out
	}
	require.Empty(t, Verify("s1", chain(t, k, 6), keys))

	altered := chain(t, k, 6)
	altered[1].Payload = []byte(`{"query_id":2,"sql":"drop table x","protocol":"simple"}`)
	require.Equal(t, []string{"altered"}, kinds(Verify("s1", altered, keys)))

	missing := chain(t, k, 6)
	missing = append(missing[:2], missing[3:]...)
	require.Equal(t, []string{"missing"}, kinds(Verify("s1", missing, keys)))

	reordered := chain(t, k, 6)
	reordered[1], reordered[2] = reordered[2], reordered[1]
	reordered[1].Seq, reordered[2].Seq = 2, 3 // renumbered to hide it: the hashes give it away
	require.Contains(t, kinds(Verify("s1", reordered, keys)), "altered")

	unsealed := chain(t, k, 6)[:5]
	require.Equal(t, []string{"unsealed"}, kinds(Verify("s1", unsealed, keys)))

	// Cut the tail and re-seal it with another key: the seal does not verify.
	other, err := LoadKey(filepath.Join(t.TempDir(), "other"), true)
	require.NoError(t, err)
	forged := chain(t, other, 6)
	require.Equal(t, []string{"bad_seal"}, kinds(Verify("s1", forged, keys)))
	keys[other.ID] = other.Private.Public().(ed25519.PublicKey)
	require.Empty(t, Verify("s1", forged, keys), "a rotated-out key listed in verify_keys still verifies")
}
