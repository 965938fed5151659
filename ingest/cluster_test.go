package ingest_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// The audit store on real ClickHouse 18.16 clusters, through Debian's ZooKeeper: 2 shards ×
// 1 replica, and 1 shard × 2 replicas (insert_quorum 2). The cluster migrations run ON
// CLUSTER; the real ingest consumer inserts from an embedded JetStream through the
// Distributed table; events of many sessions arrive, and again (the same ids) after a
// simulated crash and restart of ingest. Then every event is stored exactly once through
// events (count FINAL = uniqExact(id) = what was published), a session's events are on
// one shard, replay and verify read every session back intact from the Distributed table,
// the sweeper's open-session query works on it, and retention drops an old partition on
// every server. The first configured address has no server (connections go to the next);
// with two replicas, the replica ingest uses is killed: no batch is acknowledged until it
// is back (insert_quorum 2), and then none is missing on either.
func TestCluster(t *testing.T) {
	zk := chtest.StartZooKeeper(t)
	t.Run("2 shards x 1 replica", func(t *testing.T) { testCluster(t, zk, 2, 1) })
	t.Run("1 shard x 2 replicas", func(t *testing.T) { testCluster(t, zk, 1, 2) })
}

func testCluster(t *testing.T, zk *localdb.ZooKeeper, shards, replicas int) {
	ctx := context.Background()
	cl := chtest.StartCluster(t, zk, shards, replicas)
	b := bustest.Connect(t)
	// The first address has no server: connections go to the next.
	dead, err := localdb.FreePort()
	require.NoError(t, err)
	cfg := config.ClickHouse{Address: fmt.Sprintf("127.0.0.1:%d,", dead) + cl.Addrs(), Database: "gh", Username: "default", Cluster: config.ClickHouseCluster{
		Name: chtest.ClusterName, ZooKeeperPath: fmt.Sprintf("/clickhouse/tables/{shard}/gh%dx%d", shards, replicas), ShardingKey: "cityHash64(session_id)"}}
	if replicas > 1 {
		cfg.Cluster.InsertQuorum = replicas
	}
	conn, err := ingest.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var sync string
	require.NoError(t, conn.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'insert_distributed_sync'").Scan(&sync))
	require.Equal(t, "1", sync, "inserts into the Distributed table must be synchronous: ingest acks after them")

	clusterUpgrade(t, conn, cfg, cl)

	// Warnings (a failed insert, migrations retried) go to the test's log.
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	run := func() (*prometheus.Registry, func()) {
		reg := prometheus.NewRegistry()
		in := ingest.New(ingest.Config{Database: "gh", Cluster: cfg.Cluster, BatchSize: 16, FlushInterval: 50 * time.Millisecond}, b.JS, conn, reg, log)
		require.NoError(t, in.Start(ctx))
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = in.Run(rctx); close(done) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return reg, stop
	}
	_, crash := run()

	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	key := &seal.Key{Private: priv, ID: seal.KeyID(pub)}
	keys := map[string]ed25519.PublicKey{key.ID: pub}

	// 48 sessions this month on two resources (6 left open), 8 on resource old in January
	// 2020 (retention drops that partition).
	now := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	var sessions [][]schemas.Event
	open := map[string]bool{}
	for i := 0; i < 48; i++ {
		id := fmt.Sprintf("s%02d", i)
		ended := i%8 != 0
		if !ended {
			open[id] = true
		}
		sessions = append(sessions, clusterSession(t, key, id, []string{"orders", "payments"}[i%2], now.Add(time.Duration(i)*time.Second), 2+i%4, ended))
	}
	for i := 0; i < 8; i++ {
		sessions = append(sessions, clusterSession(t, key, fmt.Sprintf("old%d", i), "old", time.Date(2020, 1, 10+i, 3, 0, 0, 0, time.UTC), 1, true))
	}
	total, old := 0, 0
	for _, s := range sessions {
		total += len(s)
		if s[0].Resource == "old" {
			old += len(s)
		}
	}
	// Each session in two messages, as a proxy batches them.
	for _, s := range sessions {
		half := len(s) / 2
		publishEvents(t, b.JS, s[:half])
		publishEvents(t, b.JS, s[half:])
	}
	caughtUp := func() bool {
		cons, err := b.JS.Consumer(ctx, bus.StreamAudit, ingest.ConsumerName)
		require.NoError(t, err)
		ci, err := cons.Info(ctx)
		require.NoError(t, err)
		return ci.NumPending == 0 && ci.NumAckPending == 0
	}
	require.Eventually(t, caughtUp, 60*time.Second, 50*time.Millisecond)
	require.Equal(t, uint64(total), countFinal(t, conn))

	// A crash: ingest stops, a proxy replays its spool (every event of 12 sessions again,
	// same ids, new messages), ingest starts again on the same durable consumer.
	crash()
	again := 0
	for _, s := range sessions[:12] {
		publishEvents(t, b.JS, s)
		again += len(s)
	}
	reg, _ := run()
	require.Eventually(t, func() bool { return caughtUp() && counterValue(reg, "gatehouse_ingest_rows_total") == float64(again) }, 60*time.Second, 50*time.Millisecond)

	// Exactly once through the Distributed table, whatever merges have happened yet.
	var raw, final, uniq uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM gh.events").Scan(&raw))
	require.NoError(t, conn.QueryRow(ctx, "SELECT uniqExact(id) FROM gh.events").Scan(&uniq))
	final = countFinal(t, conn)
	t.Logf("%d×%d: %d events published, %d again after the crash; stored rows %d, count FINAL %d, uniqExact(id) %d", shards, replicas, total, again, raw, final, uniq)
	require.Equal(t, uint64(total), final)
	require.Equal(t, uint64(total), uniq)
	var limitBy uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM (SELECT id FROM gh.events ORDER BY id LIMIT 1 BY id)").Scan(&limitBy))
	require.Equal(t, uint64(total), limitBy)

	// Where the rows are: each server's events_local. A shard's replicas hold the same
	// rows (the quorum insert waited for them); shards hold disjoint sessions, together all.
	perServer := make([]map[string]uint64, len(cl.Servers))
	for i, s := range cl.Servers {
		c, err := ingest.Open(config.ClickHouse{Address: s.Addr(), Username: "default"})
		require.NoError(t, err)
		defer c.Close()
		perServer[i] = sessionCounts(t, c, "SELECT session_id, count() FROM gh.events_local FINAL GROUP BY session_id")
	}
	all := map[string]uint64{}
	for sh := 0; sh < shards; sh++ {
		first := perServer[sh*replicas]
		require.NotEmpty(t, first, "shard %d has no sessions", sh+1)
		for r := 1; r < replicas; r++ {
			require.Equal(t, first, perServer[sh*replicas+r], "replica %d of shard %d", r+1, sh+1)
		}
		for id, n := range first {
			_, twice := all[id]
			require.False(t, twice, "session %s is on two shards", id)
			all[id] = n
		}
	}
	require.Len(t, all, len(sessions))

	// Replay and verify read every session back from the Distributed table.
	var ended []string
	for _, want := range sessions {
		got, err := query.ReadSession(ctx, conn, "gh", want[0].SessionID)
		require.NoError(t, err)
		require.Equal(t, want, got, want[0].SessionID)
		if !open[want[0].SessionID] {
			ended = append(ended, want[0].SessionID)
		}
	}
	v, err := query.VerifySessions(ctx, conn, "gh", ended, keys, nil)
	require.NoError(t, err)
	require.Empty(t, v.Problems)
	require.Equal(t, len(ended), v.Sessions)

	// A sealed session's statement published again under its id, altered (a proxy's NATS
	// credentials suffice): the store keeps the first row, on every replica.
	victim := sessions[1]
	forged := victim[1]
	forged.Payload = (&schemas.DbQuery{QueryID: 1, SQL: "select 'forged'", Protocol: "simple"}).AppendJSON(nil)
	forged.Hash, err = forged.ComputeHash()
	require.NoError(t, err)
	publishEvents(t, b.JS, []schemas.Event{forged})
	require.Eventually(t, caughtUp, 60*time.Second, 50*time.Millisecond)
	got, err := query.ReadSession(ctx, conn, "gh", victim[0].SessionID)
	require.NoError(t, err)
	require.Equal(t, victim, got, "the first stored row wins")
	for _, s := range cl.Servers {
		c, err := ingest.Open(config.ClickHouse{Address: s.Addr(), Username: "default"})
		require.NoError(t, err)
		defer c.Close()
		var kept string
		err = c.QueryRow(ctx, "SELECT payload FROM gh.events_local FINAL WHERE session_id = ? AND seq = 2", victim[0].SessionID).Scan(&kept)
		if errors.Is(err, sql.ErrNoRows) {
			continue // a shard without the session
		}
		require.NoError(t, err)
		require.Equal(t, string(victim[1].Payload), kept, s.Addr())
	}

	// The sweeper's query (GLOBAL NOT IN over the Distributed table) finds the open ones.
	opened, err := ingest.OpenSessions(ctx, conn, "gh", 24*time.Hour)
	require.NoError(t, err)
	var openIDs []string
	for _, o := range opened {
		openIDs = append(openIDs, o.Session)
		require.Equal(t, "gw-1", o.Gateway)
		require.Equal(t, schemas.TypeDbQueryDone, o.Last.Type)
	}
	sort.Strings(openIDs)
	require.Equal(t, keysOf(open), openIDs)

	// Retention: the old resource's January 2020 is on every shard, and is dropped from
	// every server.
	for sh := 0; sh < shards; sh++ {
		n := 0
		for id := range perServer[sh*replicas] {
			if id[:3] == "old" {
				n++
			}
		}
		require.NotZero(t, n, "shard %d has no old session: the test would not show a drop on every shard", sh+1)
	}
	var recorded []schemas.Event
	ret := &ingest.Retention{Database: "gh", Cluster: cfg.Cluster.Name, CH: conn, Config: config.Retention{Default: 365 * 24 * time.Hour}, Log: log,
		Labels: func(string) (map[string]string, bool) { return nil, false },
		Record: func(_ context.Context, e schemas.Event) error { recorded = append(recorded, e); return nil }}
	plan, err := ret.Plan(ctx, time.Now())
	require.NoError(t, err)
	require.Len(t, plan, 1)
	require.Equal(t, "old", plan[0].Resource)
	require.Equal(t, uint32(202001), plan[0].Month)
	res, err := ret.Run(ctx, time.Now(), schemas.Identity{Subject: "test"}, "test", false)
	require.NoError(t, err)
	require.Empty(t, res.Failed)
	require.Len(t, res.Dropped, 1)
	require.Equal(t, uint64(old), res.Events)
	require.Len(t, recorded, 1)
	for i, s := range cl.Servers {
		c, err := ingest.Open(config.ClickHouse{Address: s.Addr(), Username: "default"})
		require.NoError(t, err)
		defer c.Close()
		// A replica that did not run the drop follows through ZooKeeper.
		require.Eventually(t, func() bool {
			var n uint64
			require.NoError(t, c.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = 'gh' AND table = 'events_local' AND active AND partition LIKE '(''old'',%'").Scan(&n))
			return n == 0
		}, 20*time.Second, 50*time.Millisecond, "server %d still has the dropped partition", i+1)
	}
	require.Equal(t, uint64(total-old), countFinal(t, conn))
	plan, err = ret.Plan(ctx, time.Now())
	require.NoError(t, err)
	require.Empty(t, plan)

	if replicas > 1 {
		// A replica is lost: the first address, the server ingest was using. Ingest moves
		// to the next address; with insert_quorum 2 no batch is acknowledged while only one
		// replica can take it, so the new events wait in JetStream; the lost replica comes
		// back, the batch goes in on both, and nothing is missing.
		cl.Servers[0].Kill()
		late := clusterSession(t, key, "late", "orders", now.Add(time.Minute), 3, true)
		publishEvents(t, b.JS, late)
		require.Never(t, caughtUp, 3*time.Second, 100*time.Millisecond, "acknowledged with one replica of two")
		restarted := time.Now()
		require.NoError(t, cl.Servers[0].Restart(ctx))
		require.Eventually(t, caughtUp, 60*time.Second, 100*time.Millisecond)
		t.Logf("replica lost: the late session acknowledged %s after the replica's restart began", time.Since(restarted).Round(100*time.Millisecond))
		require.Equal(t, uint64(total-old+len(late)), countFinal(t, conn))
		for i, s := range cl.Servers {
			c, err := ingest.Open(config.ClickHouse{Address: s.Addr(), Username: "default"})
			require.NoError(t, err)
			defer c.Close()
			require.Eventually(t, func() bool {
				return sessionCounts(t, c, "SELECT session_id, count() FROM gh.events_local FINAL WHERE session_id = 'late' GROUP BY session_id")["late"] == uint64(len(late))
			}, 30*time.Second, 100*time.Millisecond, "replica %d", i+1)
		}
		got, err := query.ReadSession(ctx, conn, "gh", "late")
		require.NoError(t, err)
		require.Equal(t, late, got)
	}

	// Migrating again is a no-op; a single-server events table is not silently kept.
	require.NoError(t, ingest.MigrateStore(ctx, conn, cfg))
	c0, err := ingest.Open(config.ClickHouse{Address: cl.Servers[0].Addr(), Username: "default"})
	require.NoError(t, err)
	defer c0.Close()
	require.NoError(t, ingest.Migrate(ctx, c0, "single"))
	err = ingest.MigrateCluster(ctx, c0, "single", cfg.Cluster)
	require.ErrorContains(t, err, "single.events on this server is a single-server table (ReplacingMergeTree)")
}

// clusterSession is a session's events, chained, ended and sealed with key when ended.
func clusterSession(t *testing.T, key *seal.Key, id, resource string, at time.Time, statements int, ended bool) []schemas.Event {
	who := schemas.Identity{Subject: "svc-" + resource, Issuer: "https://idp.example", Kind: "service"}
	var out []schemas.Event
	add := func(p schemas.Payload) {
		e := schemas.Event{ID: fmt.Sprintf("%s-%03d", id, len(out)+1), Type: p.EventType(), Code: schemas.Codes[p.EventType()],
			Time: at.Add(time.Duration(len(out)) * time.Millisecond), SessionID: id, Seq: uint64(len(out) + 1), Identity: who,
			Resource: resource, PolicyRevision: 3, Payload: p.AppendJSON(nil)}
		if len(out) > 0 {
			e.PrevHash = out[len(out)-1].Hash
		}
		h, err := e.ComputeHash()
		require.NoError(t, err)
		e.Hash = h
		out = append(out, e)
	}
	add(&schemas.SessionStart{Protocol: "postgres", ClientAddr: "127.0.0.1:5000", Gateway: "gw-1"})
	for q := uint64(1); q <= uint64(statements); q++ {
		add(&schemas.DbQuery{QueryID: q, SQL: "select 1", Protocol: "simple"})
		add(&schemas.DbQueryDone{QueryID: q, Status: "ok", CommandTags: []string{"SELECT 1"}, Rows: 1})
	}
	if ended {
		add(&schemas.SessionEnd{Reason: "client", Statements: uint64(statements)})
		last := out[len(out)-1]
		add(key.Seal(id, last.Seq, last.Hash))
	}
	return out
}

// testLog writes to t's log, shown when the test fails or with -v.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func publishEvents(t *testing.T, js jetstream.JetStream, evs []schemas.Event) {
	var msg []byte
	for i := range evs {
		if i > 0 {
			msg = append(msg, '\n')
		}
		msg = evs[i].AppendJSON(msg)
	}
	_, err := js.Publish(context.Background(), bus.AuditSubject(evs[0].Resource, evs[0].SessionID, "batch"), msg)
	require.NoError(t, err)
}

func countFinal(t *testing.T, conn driver.Conn) uint64 {
	var n uint64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count() FROM gh.events FINAL").Scan(&n))
	return n
}

func sessionCounts(t *testing.T, conn driver.Conn, sql string) map[string]uint64 {
	rows, err := conn.Query(context.Background(), sql)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var id string
		var n uint64
		require.NoError(t, rows.Scan(&id, &n))
		out[id] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func keysOf(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func counterValue(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// clusterUpgrade: a store made by the first cluster migrations (events_local without the
// version) with rows in it is rebuilt by the rest, its rows intact and on the same shards,
// and nothing is left of the rebuild on any server.
func clusterUpgrade(t *testing.T, conn driver.Conn, cfg config.ClickHouse, cl *chtest.Cluster) {
	ctx := context.Background()
	ucl := cfg.Cluster
	ucl.ZooKeeperPath += "-up"
	require.NoError(t, ingest.MigrateClusterTo(ctx, conn, "up", ucl, 2))
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	key := &seal.Key{Private: priv, ID: seal.KeyID(pub)}
	var want [][]schemas.Event
	b, err := conn.PrepareBatch(ctx, "INSERT INTO up.events ("+ingest.EventColumns+")")
	require.NoError(t, err)
	for i := 0; i < 12; i++ {
		evs := clusterSession(t, key, fmt.Sprintf("u%02d", i), "orders", time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour), 2, true)
		want = append(want, evs)
		for j, e := range evs {
			require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
				e.Identity.Subject, e.Identity.Name, e.Identity.Issuer, e.Identity.Groups, e.Identity.Kind, e.Identity.OnBehalfOf, e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), uint64(100*i+j+1), uint32(0)))
		}
	}
	require.NoError(t, b.Send())
	require.NoError(t, ingest.MigrateCluster(ctx, conn, "up", ucl))
	require.NoError(t, ingest.MigrateCluster(ctx, conn, "up", ucl)) // applied once
	for _, w := range want {
		got, err := query.ReadSession(ctx, conn, "up", w[0].SessionID)
		require.NoError(t, err)
		require.Equal(t, w, got)
	}
	for _, s := range cl.Servers {
		c, err := ingest.Open(config.ClickHouse{Address: s.Addr(), Username: "default"})
		require.NoError(t, err)
		defer c.Close()
		require.Equal(t, []string{"events", "events_local", "schema_migrations_cluster"},
			queryStrings(t, c, "SELECT name FROM system.tables WHERE database = 'up' ORDER BY name"), s.Addr())
		var ver uint64
		require.NoError(t, c.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = 'up' AND table = 'events_local' AND name = 'ver'").Scan(&ver))
		require.Equal(t, uint64(1), ver, s.Addr())
	}
}
