package ingest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
)

// A store from before identity names gets the identity_name column; its events read back
// as they were written (no name, chain intact), and new events keep their name.
func TestMigrationAddsIdentityName(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	require.NoError(t, ingest.MigrateTo(ctx, h.ch, "old", 5))
	id := schemas.Identity{Subject: "CgxzdmMtZGVwbG95ZXI", Issuer: "https://dex.example/", Kind: "service"}
	old := chain(t, "before", "demo", id, &schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "simple"}, &schemas.SessionEnd{Reason: "client"})
	b, err := h.ch.PrepareBatch(ctx, "INSERT INTO old.events ("+ingest.EventColumnsV1+")")
	require.NoError(t, err)
	for _, e := range old {
		require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
			e.Identity.Subject, e.Identity.Issuer, []string{}, e.Identity.Kind, "", e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), uint64(1), uint32(0)))
	}
	require.NoError(t, b.Send())

	require.NoError(t, ingest.Migrate(ctx, h.ch, "old"))
	require.NoError(t, ingest.Migrate(ctx, h.ch, "old")) // applied once
	got, err := query.ReadSession(ctx, h.ch, "old", "before")
	require.NoError(t, err)
	require.Equal(t, old, got)
	require.NoError(t, schemas.VerifyChain(got))

	id.Name = "svc-deployer"
	named := chain(t, "after", "demo", id, &schemas.SessionEnd{Reason: "client"})
	b, err = h.ch.PrepareBatch(ctx, "INSERT INTO old.events ("+ingest.EventColumns+")")
	require.NoError(t, err)
	e := named[0]
	require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
		e.Identity.Subject, e.Identity.Name, e.Identity.Issuer, []string{}, e.Identity.Kind, "", e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), uint64(2), uint32(0)))
	require.NoError(t, b.Send())
	got, err = query.ReadSession(ctx, h.ch, "old", "after")
	require.NoError(t, err)
	require.Equal(t, named, got)
	require.NoError(t, schemas.VerifyChain(got))

	require.Equal(t, []string{"svc-deployer", "", ""}, queryStrings(t, h.ch, "SELECT identity_name FROM old.events ORDER BY session_id, seq"))
}
