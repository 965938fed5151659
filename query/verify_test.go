package query

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
)

// A session whose oldest month was dropped by retention is reported as truncated, naming
// the run, and is not a problem; the same gap without a retention run, or a gap in the
// middle of a session, still is.
func TestVerifyExplainsRetention(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)

	b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+ingest.EventColumns+")")
	require.NoError(t, err)
	store := func(session, resource, typ string, seqs []uint64, at time.Time, payload string) {
		prev := "hash-of-an-event-not-stored"
		for _, seq := range seqs {
			e := schemas.Event{ID: session + "-" + itoa(seq), Type: typ, Code: "GH2000", Time: at, SessionID: session, Seq: seq,
				Identity: schemas.Identity{Subject: "svc", Issuer: "iss", Kind: "service"}, Resource: resource, PrevHash: prev, Payload: []byte(payload)}
			if seq == 1 {
				e.PrevHash = ""
			}
			h, err := e.ComputeHash()
			require.NoError(t, err)
			e.Hash = h
			require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
				"svc", "", "iss", []string{}, "service", "", uint64(0), e.PrevHash, e.Hash, payload, uint64(0), uint32(0)))
			prev = h
		}
	}
	march := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	store("s-truncated", "demo", "db.query", []uint64{3, 4, 5}, march, `{}`)
	store("s-other", "other", "db.query", []uint64{3, 4}, march, `{}`)
	store("s-middle", "demo", "db.query", []uint64{1, 2, 4}, march, `{}`)
	store("s-whole", "demo", "db.query", []uint64{1, 2}, march, `{}`)
	run := `{"dropped":[{"resource":"demo","month":202602,"newest":"2026-02-28T00:00:00Z","events":7,"keep":"720h0m0s","rule":"default"}],"events":7,"source":"api"}`
	at := time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC)
	require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), "r1", schemas.TypeAuditRetention, "GH7000", "r-session", uint64(1), "_config",
		"admin", "", "iss", []string{}, "human", "", uint64(0), "", "h", run, uint64(0), uint32(0)))
	require.NoError(t, b.Send())

	v, err := VerifySessions(ctx, conn, "gh", []string{"s-truncated", "s-other", "s-middle", "s-whole"}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 4, v.Sessions)
	require.Len(t, v.Truncated, 1)
	require.Equal(t, "s-truncated", v.Truncated[0].Session)
	require.Equal(t, "truncated", v.Truncated[0].Kind)
	require.Contains(t, v.Truncated[0].Detail, "events 1 to 2 are gone")
	require.Contains(t, v.Truncated[0].Detail, "partition 202602 dropped 2026-04-02T09:00:00Z by admin")
	var kinds []string
	for _, p := range v.Problems {
		kinds = append(kinds, p.Session+":"+p.Kind+":"+itoa(p.Seq))
	}
	require.ElementsMatch(t, []string{"s-other:missing:1", "s-middle:missing:3"}, kinds)
}
