package ingest

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// firstWinsColumn is the events table's version: ReplacingMergeTree(ver) keeps, of the rows
// with one session, position and id, the one with the largest version, which is the one
// JetStream stored first. Copies of one event (a redelivery, a journal replayed after a
// crash) are identical, so which of them is kept does not matter; a different row under a
// taken id can only be published later, and it is the one dropped when ClickHouse merges:
// a writer to GH_AUDIT cannot replace what the store holds. Merges happen within a
// partition only, so session reads do not rely on them: they take the first stored row of
// each key themselves (auditstore.ReadSession), and verify reports a later one as shadowed.
// The stream position is JetStream's, which no publisher chooses, and the column is
// MATERIALIZED, so no insert can set it.
const firstWinsColumn = `ver UInt64 MATERIALIZED 18446744073709551615 - stream_seq`

// rebuildFirstWins moves the events table (on a cluster, events_local on every server) to
// ReplacingMergeTree(ver): the engine's version cannot be altered, so the rows are copied
// into a new table. The table is taken offline first (renamed away): every ingest copy, of
// this version or an older one, fails its inserts and retries them, so their events wait in
// GH_AUDIT and none is written where the copy would miss it; readers get an error until
// the new table is in place. Each step looks before it acts, so a run stopped anywhere
// (a crash, a lost migration lease) is resumed by the next.
func rebuildFirstWins(ctx context.Context, conn driver.Conn, render func(string) string, cluster bool) error {
	local, on, engine := "events", "", "ReplacingMergeTree(ver)"
	if cluster {
		local, on, engine = "events_local", " ON CLUSTER {cluster}", "ReplicatedReplacingMergeTree('{zk}/events_local_first', '{replica}', ver)"
	}
	exec := func(sql string) error {
		if err := conn.Exec(ctx, render(sql)); err != nil {
			return fmt.Errorf("%s: %w", render(sql), err)
		}
		return nil
	}
	count := func(sql string, args ...any) (uint64, error) {
		var n uint64
		if err := conn.QueryRow(ctx, render(sql), args...).Scan(&n); err != nil {
			return 0, fmt.Errorf("%s: %w", render(sql), err)
		}
		return n, nil
	}
	leftovers := func() error {
		for _, t := range []string{"events_copy_from", "events_copy_to", local + "_last_wins"} {
			if err := exec("DROP TABLE IF EXISTS {db}." + t + on); err != nil {
				return err
			}
		}
		return nil
	}
	db := render("{db}")
	done, err := count("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = 'ver'", db, local)
	if err != nil {
		return err
	}
	if done > 0 {
		return leftovers() // the live table has the version: a run finished it
	}
	if live, err := count("SELECT count() FROM system.tables WHERE database = ? AND name = ?", db, local); err != nil {
		return err
	} else if live > 0 {
		if err := exec("RENAME TABLE {db}." + local + " TO {db}." + local + "_last_wins" + on); err != nil {
			return err
		}
	}
	if err := exec("CREATE TABLE IF NOT EXISTS {db}." + local + "_first" + on + " (" + eventColumnDefsV2 + ", " + firstWinsColumn + ") ENGINE = " + engine + `
	PARTITION BY (resource, toYYYYMM(date))
	ORDER BY (session_id, seq, id)`); err != nil {
		return err
	}
	if cluster {
		// Through Distributed tables over the old and the new local tables: each row goes to
		// its session's shard (the sharding key is unchanged). A stopped run's partial copy
		// stays: its rows are the same rows, which the merges collapse.
		for _, d := range [][2]string{{"events_copy_from", local + "_last_wins"}, {"events_copy_to", local + "_first"}} {
			if err := exec("CREATE TABLE IF NOT EXISTS {db}." + d[0] + on + " (" + eventColumnDefsV2 + ") ENGINE = Distributed({cluster}, {db}, " + d[1] + ", {key})"); err != nil {
				return err
			}
		}
		if err := exec("INSERT INTO {db}.events_copy_to (" + EventColumns + ") SELECT " + EventColumns + " FROM {db}.events_copy_from"); err != nil {
			return err
		}
	} else {
		if err := exec("TRUNCATE TABLE {db}.events_first"); err != nil { // a stopped run's partial copy
			return err
		}
		if err := exec("INSERT INTO {db}.events_first (" + EventColumns + ") SELECT " + EventColumns + " FROM {db}.events_last_wins"); err != nil {
			return err
		}
	}
	if err := exec("RENAME TABLE {db}." + local + "_first TO {db}." + local + on); err != nil {
		return err
	}
	return leftovers()
}
