package ingest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/seal"
)

// With a proxy's NATS credentials (publish to any audit subject), rows of a sealed session
// published again under their ids — one altered statement, and the whole tail from a
// position on, end and seal included — do not replace what the store holds: every session
// read shows the gateway's rows at once, verify reports each later row as shadowed until
// ClickHouse merges, the merge drops the attacker's rows, and the session then verifies
// as its gateway sealed it. (A later row in another partition is never merged away: it
// stays ignored and reported, query's TestLaterRowsUnderATakenKeyAreIgnored.)
func TestStoredEventsCannotBeReplaced(t *testing.T) {
	ctx := context.Background()
	h := start(t)
	_, key, keys, gws := newSweeper(t, h)
	alive := func(ctx context.Context, gw string) (bool, error) { return bus.Alive(ctx, gws, gw) }

	victim := &gatewayEvents{t: t, h: h, id: "victim"}
	victim.publish(&schemas.SessionStart{Gateway: "boot-1"},
		&schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 1, Status: "ok"},
		&schemas.DbQuery{QueryID: 2, SQL: "DROP TABLE payroll", Protocol: "simple"}, &schemas.DbQueryDone{QueryID: 2, Status: "ok"},
		&schemas.SessionEnd{Reason: "client_closed", Statements: 2})
	victim.publish(key.Seal("victim", victim.last.Seq, victim.last.Hash))
	genuine := h.waitEvents(t, "victim", 7)

	// The attacker's rows: the DROP rewritten in place (hash recomputed), and from it on a
	// consistent chain that ends and is sealed by a key the attacker holds — every row under
	// the id, session and position of the one it replaces.
	forger, err := seal.LoadKey(filepath.Join(t.TempDir(), "forger.key"), true)
	require.NoError(t, err)
	var msg []byte
	prev := genuine[2]
	for _, g := range genuine[3:] {
		e := g
		e.PrevHash = prev.Hash
		switch e.Type {
		case schemas.TypeDbQuery:
			e.Payload = (&schemas.DbQuery{QueryID: 2, SQL: "select 2", Protocol: "simple"}).AppendJSON(nil)
		case schemas.TypeSessionSealed:
			s := forger.Seal("victim", prev.Seq, prev.Hash)
			e.Payload = s.AppendJSON(nil)
		}
		e.Hash, err = e.ComputeHash()
		require.NoError(t, err)
		if len(msg) > 0 {
			msg = append(msg, '\n')
		}
		msg = e.AppendJSON(msg)
		prev = e
	}
	h.publish(t, "demo", "victim", msg) // no message id: JetStream's deduplication does not apply
	require.Eventually(t, func() bool {
		var n uint64
		require.NoError(t, h.ch.QueryRow(ctx, "SELECT count() FROM gh.events WHERE session_id = 'victim'").Scan(&n))
		return n == 11
	}, 30*time.Second, 20*time.Millisecond, "the attacker's rows are stored")
	got, err := query.ReadSession(ctx, h.ch, "gh", "victim")
	require.NoError(t, err)
	require.Equal(t, genuine, got, "a FINAL read sees the first rows at once")
	v, err := query.VerifySessions(ctx, h.ch, "gh", []string{"victim"}, keys, alive)
	require.NoError(t, err)
	var shadowed []uint64
	for _, p := range v.Problems {
		require.Equal(t, "shadowed", p.Kind, "%+v", p) // the attempt, reported; nothing else
		shadowed = append(shadowed, p.Seq)
	}
	require.Equal(t, []uint64{4, 5, 6, 7}, shadowed, "until the merge, each later row is reported")

	require.NoError(t, h.ch.Exec(ctx, "OPTIMIZE TABLE gh.events FINAL")) // as a background merge would
	var n uint64
	require.NoError(t, h.ch.QueryRow(ctx, "SELECT count() FROM gh.events WHERE session_id = 'victim'").Scan(&n))
	require.Equal(t, uint64(7), n, "the merge dropped the attacker's rows")
	require.Equal(t, genuine, h.waitEvents(t, "victim", 7), "the rows the gateway wrote are the ones kept")
	v, err = query.VerifySessions(ctx, h.ch, "gh", []string{"victim"}, keys, alive)
	require.NoError(t, err)
	require.Empty(t, v.Problems, "merged: the session verifies as its gateway sealed it")

	// Which row wins is decided by the stream position (ver = ^stream_seq), not by the order
	// in which ingest copies happen to insert them.
	var stored []struct {
		Seq       uint64 `ch:"seq"`
		StreamSeq uint64 `ch:"stream_seq"`
		Ver       uint64 `ch:"ver"`
	}
	require.NoError(t, h.ch.Select(ctx, &stored, "SELECT seq, stream_seq, ver FROM gh.events WHERE session_id = 'victim' ORDER BY seq"))
	for _, r := range stored {
		require.Equal(t, ^r.StreamSeq, r.Ver)
	}
}

// A store from before migration 7 is rebuilt with its rows intact; a run stopped midway
// (the table taken offline, a partial copy made) is finished by the next; and an insert
// cannot set the version.
func TestMigrationToFirstWins(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	names := func(q string, args ...any) []string { return queryStrings(t, h.ch, q, args...) }
	columns := func(db, table string) []string {
		return names("SELECT name FROM system.columns WHERE database = ? AND table = ? ORDER BY name", db, table)
	}
	tables := func(db string) []string {
		return names("SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
	}
	insert := func(db, table string, evs []schemas.Event, streamSeq uint64) {
		b, err := h.ch.PrepareBatch(ctx, "INSERT INTO "+db+"."+table+" ("+ingest.EventColumns+")")
		require.NoError(t, err)
		for i, e := range evs {
			require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
				e.Identity.Subject, e.Identity.Name, e.Identity.Issuer, []string{}, e.Identity.Kind, "", e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), streamSeq+uint64(i), uint32(0)))
		}
		require.NoError(t, b.Send())
	}
	id := schemas.Identity{Subject: "svc", Name: "svc", Issuer: "https://dex.example/", Kind: "service"}
	before := chain(t, "before", "demo", id, &schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "simple"}, &schemas.SessionEnd{Reason: "client"})

	for _, stopped := range []bool{false, true} {
		db := map[bool]string{false: "old", true: "stopped"}[stopped]
		require.NoError(t, ingest.MigrateTo(ctx, h.ch, db, 6))
		require.NotContains(t, columns(db, "events"), "ver")
		insert(db, "events", before, 10)
		if stopped { // taken offline and half copied, then the process died
			require.NoError(t, h.ch.Exec(ctx, "RENAME TABLE "+db+".events TO "+db+".events_last_wins"))
			require.NoError(t, ingest.MigrateTo(ctx, h.ch, db+"_scratch", 7))
			require.NoError(t, h.ch.Exec(ctx, "CREATE TABLE "+db+".events_first AS "+db+"_scratch.events"))
			insert(db, "events_first", before[:1], 10)
		}
		require.NoError(t, ingest.Migrate(ctx, h.ch, db))
		require.NoError(t, ingest.Migrate(ctx, h.ch, db)) // applied once
		require.Contains(t, columns(db, "events"), "ver", db)
		require.Equal(t, []string{"events", "schema_migrations"}, tables(db), "%s: nothing left of the rebuild", db)
		got, err := query.ReadSession(ctx, h.ch, db, "before")
		require.NoError(t, err)
		require.Equal(t, before, got, db)
		require.NoError(t, schemas.VerifyChain(got))
	}

	// The version comes from the stream position only.
	err := h.ch.Exec(ctx, "INSERT INTO old.events (id, seq, stream_seq, ver) SELECT 'x', toUInt64(1), toUInt64(1), toUInt64(0)")
	require.Error(t, err, "a MATERIALIZED column cannot be inserted")
	// A fresh store gets the table with the version at once.
	require.NoError(t, ingest.Migrate(ctx, h.ch, "fresh"))
	require.Contains(t, columns("fresh", "events"), "ver")
}

// An event is stored only under the resource and session its subject names: a proxy, whose
// NATS credentials may not publish to _config, cannot slip in a control record (here a
// policy change, which the evidence reports list) by naming _config in the body, nor file
// an event under another session than its subject's. Both are counted as invalid.
func TestEventsAreStoredUnderTheirSubject(t *testing.T) {
	h := start(t)
	forged := schemas.Event{ID: "pc-1", Type: schemas.TypePolicyChanged, Code: schemas.Codes[schemas.TypePolicyChanged], Time: time.Now().UTC().Truncate(time.Microsecond),
		SessionID: "pc-1", Seq: 1, Resource: bus.ConfigResource, Identity: schemas.Identity{Subject: "alice"},
		Payload: []byte(`{"kind":"policy","name":"prod","action":"deleted","diff":"- everything"}`)}
	forged.Hash, _ = forged.ComputeHash()
	h.publish(t, "demo", "pc-1", forged.AppendJSON(nil))
	elsewhere := forged
	elsewhere.ID, elsewhere.SessionID, elsewhere.Resource, elsewhere.Type = "q-1", "victim", "demo", schemas.TypeSessionEnd
	elsewhere.Payload = (&schemas.SessionEnd{Reason: "client_closed"}).AppendJSON(nil)
	elsewhere.Hash, _ = elsewhere.ComputeHash()
	h.publish(t, "demo", "mine", elsewhere.AppendJSON(nil))
	ok := elsewhere
	ok.ID, ok.SessionID = "ok-1", "mine"
	ok.Hash, _ = ok.ComputeHash()
	h.publish(t, "demo", "mine", ok.AppendJSON(nil))
	h.caughtUp(t)
	require.Equal(t, []string{"ok-1"}, queryStrings(t, h.ch, "SELECT id FROM gh.events ORDER BY id"))
	require.Equal(t, float64(2), counterValue(h.reg, "gatehouse_ingest_invalid_total"))

	for subject, want := range map[string][2]string{
		"gh.audit.demo.s1.batch": {"demo", "s1"}, "gh.audit._config.c1.policy.changed": {"_config", "c1"},
		"gh.audit.demo": {}, "gh.audit..s1.x": {}, "gh.audit.demo..x": {}, "other.demo.s1.x": {}, "gh.audit.demo.s1": {},
	} {
		r, s, ok := ingest.AuditSubjectParts(subject)
		require.Equal(t, want[0] != "", ok, subject)
		require.Equal(t, want, [2]string{r, s}, subject)
	}
}
