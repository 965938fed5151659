package query

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
)

// The replay reads a session range by range, in order, across ranges and across a gap
// wider than a range (missing events), and stops at its end.
func TestSessionRowsReadsEveryRangeInOrder(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	var want []uint64
	for seq := uint64(1); seq <= 1500; seq++ {
		want = append(want, seq)
	}
	for seq := uint64(30000); seq <= 30010; seq++ { // 21,000 .. 29,999 missing
		want = append(want, seq)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+ingest.EventColumns+")")
	require.NoError(t, err)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := len(want) - 1; i >= 0; i-- { // stored out of order
		require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), "e"+itoa(want[i]), "db.query", "GH2000", "s", want[i], "demo",
			"svc", "", "iss", []string{}, "service", "", uint64(0), "", "", `{}`, uint64(0), uint32(0)))
	}
	require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), "other", "db.query", "GH2000", "s2", uint64(1), "demo",
		"svc", "", "iss", []string{}, "service", "", uint64(0), "", "", `{}`, uint64(0), uint32(0)))
	require.NoError(t, b.Send())

	r := &sessionRows{ctx: ctx, ch: conn, db: "gh", id: "s", size: 1000}
	defer r.Close()
	var got []uint64
	for r.Next() {
		var e schemas.Event
		var at uint64
		require.NoError(t, r.Scan(&e, &at))
		require.Equal(t, "s", e.SessionID)
		got = append(got, e.Seq)
	}
	require.NoError(t, r.Err())
	require.Equal(t, want, got)

	none := &sessionRows{ctx: ctx, ch: conn, db: "gh", id: "nope", size: 1000}
	require.False(t, none.Next())
	require.NoError(t, none.Err())
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// startStore starts a ClickHouse with the events table in database gh.
func startStore(t *testing.T) driver.Conn {
	ch := chtest.Start(t)
	conn, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: "default"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, ingest.Migrate(context.Background(), conn, "gh"))
	return conn
}
