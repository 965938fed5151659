// Package ingest moves audit events from JetStream into ClickHouse: a durable pull consumer,
// batched inserts, and an ack only after ClickHouse has the batch. It also owns the
// ClickHouse schema and its migrations.
package ingest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gatehouse/gatehouse/services/config"
)

// Open connects to ClickHouse over the native protocol (the HTTP protocol of clickhouse-go
// does not work with ClickHouse 18.16).
//
// Several addresses are tried in order. On a cluster every statement runs with
// insert_distributed_sync=1: an insert into the Distributed table returns only once every
// shard has its rows, because ingest acknowledges JetStream after the insert (an
// asynchronous insert queued on a node that is then lost would lose acknowledged events).
func Open(cfg config.ClickHouse) (driver.Conn, error) {
	opts := &clickhouse.Options{
		Addr:         cfg.Addresses(),
		Auth:         clickhouse.Auth{Username: cfg.Username, Password: cfg.Password},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  60 * time.Second,
		MaxOpenConns: 8,
	}
	if cfg.Cluster.Enabled() {
		// Integer settings only: servers before 19.x take settings in a binary form in which
		// clickhouse-go can send integers, not strings.
		opts.Settings = clickhouse.Settings{"insert_distributed_sync": 1}
		if cfg.Cluster.InsertQuorum > 1 {
			opts.Settings["insert_quorum"] = cfg.Cluster.InsertQuorum
		}
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Address, err)
	}
	return conn, nil
}

// migration is one schema step: a statement, or a function for a step that must look
// before it acts (a rebuild that resumes where a stopped run left it).
type migration struct {
	sql string
	run func(ctx context.Context, conn driver.Conn, render func(string) string) error
}

// migrations are applied in order, once each. They use only what ClickHouse 18.16 has: no
// DateTime64, Map, JSON, LowCardinality, IPv6 or TTL. Never edit one that has shipped; add
// a new one.
var migrations = []migration{
	{sql: `CREATE TABLE IF NOT EXISTS {db}.events (` + eventColumnDefsV1 + `) ENGINE = ReplacingMergeTree
	PARTITION BY toYYYYMM(date)
	ORDER BY (session_id, seq, id)`},
	// 2-5: partitions per resource and month, so retention can drop a resource's old months
	// (a partition key cannot be altered: copy into a new table and swap).
	{sql: `CREATE TABLE IF NOT EXISTS {db}.events_by_resource (` + eventColumnDefsV1 + `) ENGINE = ReplacingMergeTree
	PARTITION BY (resource, toYYYYMM(date))
	ORDER BY (session_id, seq, id)`},
	{sql: `INSERT INTO {db}.events_by_resource (` + eventColumnsV1 + `) SELECT ` + eventColumnsV1 + ` FROM {db}.events`},
	{sql: `RENAME TABLE {db}.events TO {db}.events_by_month, {db}.events_by_resource TO {db}.events`},
	{sql: `DROP TABLE {db}.events_by_month`},
	// 6: the caller's readable name next to the token subject (identity.name). Events
	// recorded before it have '' (their envelope had no name; readers show the subject).
	// ADD COLUMN only changes metadata, on a table of any size.
	{sql: `ALTER TABLE {db}.events ADD COLUMN identity_name String DEFAULT '' AFTER identity_sub`},
	// 7: the first stored copy of an event wins (firstWins): the engine's version cannot be
	// altered, so the table is rebuilt.
	{run: func(ctx context.Context, conn driver.Conn, render func(string) string) error {
		return rebuildFirstWins(ctx, conn, render, false)
	}},
}

// eventColumnDefsV1 are the columns of the events table as migrations 1-5 created it
// (frozen: later columns are added by later migrations).
const eventColumnDefsV1 = `
		date Date,
		time DateTime,
		time_us UInt64,
		id String,
		type String,
		code String,
		session_id String,
		seq UInt64,
		resource String,
		identity_sub String,
		identity_issuer String,
		identity_groups Array(String),
		identity_kind String,
		identity_on_behalf_of String,
		policy_revision UInt64,
		prev_hash String,
		hash String,
		payload String,
		stream_seq UInt64,
		stream_index UInt32
	`

// Migrate creates the database and applies pending migrations.
func Migrate(ctx context.Context, conn driver.Conn, db string) error {
	return migrate(ctx, conn, db, len(migrations))
}

func migrate(ctx context.Context, conn driver.Conn, db string, upTo int) error {
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+db+".schema_migrations (version UInt32, applied DateTime) ENGINE = MergeTree ORDER BY version"); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	r := strings.NewReplacer("{db}", db)
	return applyMigrations(ctx, conn, db+".schema_migrations", "migration", migrations[:upTo], r.Replace)
}

// applyMigrations runs the steps of list past the highest version table (version, applied)
// records, in order, each rendered, and records each once it ran (the highest, not the
// count: two copies that raced before the migration lease may have recorded one twice).
// Inserts go through a batch: the native protocol sends data blocks, which every server
// version accepts (a literal VALUES insert hangs on 18.16).
func applyMigrations(ctx context.Context, conn driver.Conn, table, what string, list []migration, render func(string) string) error {
	var applied uint32
	if err := conn.QueryRow(ctx, "SELECT toUInt32(max(version)) FROM "+table).Scan(&applied); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	for i := int(applied); i < len(list); i++ {
		var err error
		if list[i].run != nil {
			err = list[i].run(ctx, conn, render)
		} else {
			err = conn.Exec(ctx, render(list[i].sql))
		}
		if err != nil {
			return fmt.Errorf("%s %d: %w", what, i+1, err)
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (version, applied)")
		if err == nil {
			err = b.Append(uint32(i+1), time.Now())
		}
		if err == nil {
			err = b.Send()
		}
		if err != nil {
			return fmt.Errorf("record %s %d: %w", what, i+1, err)
		}
	}
	return nil
}

// EventColumns is the explicit column list every insert names (old servers need it): the
// events table's columns as the migrations leave it.
const EventColumns = "date, time, time_us, id, type, code, session_id, seq, resource, identity_sub, identity_name, identity_issuer, identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash, payload, stream_seq, stream_index"

// eventColumnsV1 is the column list of the table migrations 1-5 made (frozen).
const eventColumnsV1 = "date, time, time_us, id, type, code, session_id, seq, resource, identity_sub, identity_issuer, identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash, payload, stream_seq, stream_index"
