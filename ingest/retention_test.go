package ingest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// event is one stand-alone event of resource at t.
func event(t *testing.T, resource string, at time.Time) []byte {
	e := schemas.Event{ID: resource + at.Format("20060102"), Type: schemas.TypeSessionEnd, Code: schemas.CodeSessionEnd, Time: at,
		SessionID: resource + at.Format("20060102"), Seq: 1, Resource: resource, Payload: (&schemas.SessionEnd{Reason: "client"}).AppendJSON(nil)}
	var err error
	e.Hash, err = e.ComputeHash()
	require.NoError(t, err)
	return e.AppendJSON(nil)
}

func (h *harness) resources(t *testing.T, where string) map[string]uint64 {
	rows, err := h.ch.Query(context.Background(), "SELECT concat(resource, '@', toString(toYYYYMM(date))), count() FROM gh.events WHERE "+where+" GROUP BY resource, date")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var k string
		var n uint64
		require.NoError(t, rows.Scan(&k, &n))
		out[k] += n
	}
	require.NoError(t, rows.Err())
	return out
}

func TestRetentionDropsOldMonthsPerResourceLabelAndRecordsTheRun(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 12, 0, 0, 0, time.UTC) }
	for _, e := range []struct {
		resource string
		at       time.Time
	}{
		{"prod-db", day(2025, 10, 3)}, {"prod-db", day(2025, 10, 30)}, // a year and more: dropped
		{"prod-db", day(2026, 1, 15)},                                // within the year: kept
		{"dev-db", day(2026, 9, 30)},                                 // more than 30 days: dropped
		{"dev-db", day(2026, 10, 25)}, {"dev-db", day(2026, 11, 20)}, // the month's newest is recent: kept whole
		{"_config", day(2026, 5, 1)},  // default (90 days): dropped
		{"_config", day(2026, 11, 1)}, // kept
		{"gone-db", day(2026, 6, 1)},  // removed resource: default, dropped
		{"staging", day(2024, 1, 1)},  // no rule matches: default, dropped
	} {
		h.publish(t, e.resource, e.resource+e.at.Format("20060102"), event(t, e.resource, e.at))
	}
	require.Eventually(t, func() bool { return h.count(t) == 10 }, 30*time.Second, 20*time.Millisecond)

	labels := map[string]map[string]string{
		"prod-db": {"env": "production", "team": "orders"},
		"dev-db":  {"env": "dev"},
		"staging": {"env": "staging"},
	}
	r := &ingest.Retention{Database: "gh", CH: h.ch, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Config: config.Retention{Default: 90 * 24 * time.Hour, Rules: []config.RetentionRule{
			{Labels: map[string]string{"env": "production"}, Keep: 365 * 24 * time.Hour},
			{Labels: map[string]string{"env": "dev"}, Keep: 30 * 24 * time.Hour},
		}},
		Labels: func(n string) (map[string]string, bool) { l, ok := labels[n]; return l, ok },
		Record: func(ctx context.Context, e schemas.Event) error { return bus.RecordControl(ctx, h.js, e) },
	}
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	admin := schemas.Identity{Subject: "admin", Issuer: "test", Kind: "human"}

	// A dry run says what would go and changes nothing.
	dry, err := r.Run(ctx, now, admin, "api", true)
	require.NoError(t, err)
	var planned []string
	for _, p := range dry.Dropped {
		planned = append(planned, p.Resource+"@"+itoa(uint64(p.Month))+" "+p.Rule+" "+p.Keep)
	}
	require.Equal(t, []string{"staging@202401 default 2160h0m0s", "prod-db@202510 env=production 8760h0m0s", "_config@202605 default 2160h0m0s",
		"gone-db@202606 default 2160h0m0s", "dev-db@202609 env=dev 720h0m0s"}, planned)
	require.Equal(t, uint64(6), dry.Events)
	require.Equal(t, uint64(10), h.count(t))

	res, err := r.Run(ctx, now, admin, "api", false)
	require.NoError(t, err)
	require.Equal(t, dry.Dropped, res.Dropped)
	require.Empty(t, res.Failed)
	require.Equal(t, map[string]uint64{"prod-db@202601": 1, "dev-db@202610": 1, "dev-db@202611": 1, "_config@202611": 1},
		h.resources(t, "type = 'session.end'"))

	// The run is in the trail (and reaches ClickHouse like any event).
	var payload string
	require.Eventually(t, func() bool {
		return h.ch.QueryRow(ctx, "SELECT payload FROM gh.events WHERE type = 'audit.retention' AND identity_sub = 'admin'").Scan(&payload) == nil
	}, 30*time.Second, 20*time.Millisecond)
	var got schemas.AuditRetention
	require.NoError(t, json.Unmarshal([]byte(payload), &got))
	require.Equal(t, *res, got)
	require.Equal(t, "api", got.Source)

	// Nothing left to drop: no run recorded.
	again, err := r.Run(ctx, now, admin, "schedule", false)
	require.NoError(t, err)
	require.Empty(t, again.Dropped)
	time.Sleep(300 * time.Millisecond)
	var runs uint64
	require.NoError(t, h.ch.QueryRow(ctx, "SELECT count() FROM gh.events WHERE type = 'audit.retention'").Scan(&runs))
	require.Equal(t, uint64(1), runs)
}

// A database from before per-resource partitions keeps its events through the upgrade.
func TestMigrationToResourcePartitionsKeepsEvents(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	require.NoError(t, ingest.MigrateTo(ctx, h.ch, "old", 1))
	b, err := h.ch.PrepareBatch(ctx, "INSERT INTO old.events ("+ingest.EventColumnsV1+")")
	require.NoError(t, err)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, res := range []string{"demo", "_config"} {
		require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), "e"+itoa(uint64(i)), "session.end", "GH1001", "s"+itoa(uint64(i)), uint64(1), res,
			"svc", "iss", []string{"g"}, "service", "", uint64(0), "", "h", `{"reason":"client"}`, uint64(i+1), uint32(0)))
	}
	require.NoError(t, b.Send())
	require.NoError(t, ingest.Migrate(ctx, h.ch, "old"))
	require.NoError(t, ingest.Migrate(ctx, h.ch, "old")) // applied once
	var n uint64
	require.NoError(t, h.ch.QueryRow(ctx, "SELECT count() FROM old.events WHERE hash = 'h'").Scan(&n))
	require.Equal(t, uint64(2), n)
	rows, err := h.ch.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = 'old' AND table = 'events' AND active ORDER BY partition")
	require.NoError(t, err)
	var parts []string
	for rows.Next() {
		var p string
		require.NoError(t, rows.Scan(&p))
		parts = append(parts, p)
	}
	require.Equal(t, []string{"('_config',202603)", "('demo',202603)"}, parts)
}

// Of several ingest replicas, one runs each interval's scheduled retention: they claim it
// in the locks bucket.
func TestScheduledRetentionRunsOncePerIntervalAmongReplicas(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	h.publish(t, "staging", "staging20240101", event(t, "staging", time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)))
	require.Eventually(t, func() bool { return h.count(t) == 1 }, 30*time.Second, 20*time.Millisecond)
	replica := func(name string) *ingest.Retention {
		return &ingest.Retention{Database: "gh", CH: h.ch, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Config: config.Retention{Default: 90 * 24 * time.Hour, Interval: time.Hour},
			Labels: func(string) (map[string]string, bool) { return nil, false },
			Record: func(ctx context.Context, e schemas.Event) error { return bus.RecordControl(ctx, h.js, e) },
			Claim:  func(ctx context.Context, key string) (bool, error) { return bus.Claim(ctx, h.js, key, name) },
		}
	}
	a, b := replica("a"), replica("b")
	who := schemas.Identity{Subject: "gatehouse-retention", Kind: "system"}
	now := time.Date(2026, 11, 22, 5, 10, 0, 0, time.UTC)
	ran, err := a.Scheduled(ctx, now, who)
	require.NoError(t, err)
	require.True(t, ran)
	ran, err = b.Scheduled(ctx, now.Add(20*time.Minute), who) // the same hour
	require.NoError(t, err)
	require.False(t, ran, "the interval was claimed by the other replica")
	ran, err = b.Scheduled(ctx, now.Add(time.Hour), who) // the next one
	require.NoError(t, err)
	require.True(t, ran)
	require.Empty(t, h.resources(t, "type = 'session.end'"), "the old month is gone")
	var runs uint64
	require.Eventually(t, func() bool {
		return h.ch.QueryRow(ctx, "SELECT count() FROM gh.events WHERE type = 'audit.retention'").Scan(&runs) == nil && runs == 1
	}, 30*time.Second, 50*time.Millisecond, "one run recorded (the second had nothing to drop)")
}
