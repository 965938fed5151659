package ingest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gatehouse/gatehouse/services/config"
)

// clusterMigrations are the schema of a ClickHouse cluster (clickhouse.cluster), applied
// in order, once each, ON CLUSTER. events_local holds the rows on every server
// (ReplicatedReplacingMergeTree: the replicas of a shard share them through ZooKeeper) with
// the single-server table's columns, partitions and order; events is a Distributed table
// over it, so readers and ingest keep naming {db}.events. The sharding key is a hash of
// session_id: copies of an event, and a whole session, are on one shard, which keeps
// deduplication by id exact.
//
// Applied migrations are recorded per server (an INSERT cannot be ON CLUSTER), so a
// migration may run again when ingest next connects to another server: each one must be
// idempotent (IF NOT EXISTS, IF EXISTS, or looking first). Never edit one that has
// shipped; add a new one. {cluster}, {zk} and {key} come from the configuration.
var clusterMigrations = []migration{
	{sql: `CREATE TABLE IF NOT EXISTS {db}.events_local ON CLUSTER {cluster} (` + eventColumnDefsV2 + `)
	ENGINE = ReplicatedReplacingMergeTree('{zk}/events_local', '{replica}')
	PARTITION BY (resource, toYYYYMM(date))
	ORDER BY (session_id, seq, id)`},
	{sql: `CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER {cluster} (` + eventColumnDefsV2 + `)
	ENGINE = Distributed({cluster}, {db}, events_local, {key})`},
	// 3: the first stored copy of an event wins (firstWins): events_local is rebuilt.
	{run: func(ctx context.Context, conn driver.Conn, render func(string) string) error {
		return rebuildFirstWins(ctx, conn, render, true)
	}},
}

// eventColumnDefsV2 are the events table's columns after migration 6, in EventColumns'
// order (frozen: the cluster schema's first migration creates them at once).
const eventColumnDefsV2 = `
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
		identity_name String DEFAULT '',
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

// MigrateStore applies the migrations of the configured layout: the single-server schema,
// or the cluster's.
func MigrateStore(ctx context.Context, conn driver.Conn, cfg config.ClickHouse) error {
	if !cfg.Cluster.Enabled() {
		return Migrate(ctx, conn, cfg.Database)
	}
	return MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster)
}

// MigrateCluster creates the database on every server of the cluster and applies pending
// cluster migrations. The servers need remote_servers with the cluster, macros {shard} and
// {replica}, zookeeper and distributed_ddl (docs/operations.md).
func MigrateCluster(ctx context.Context, conn driver.Conn, db string, cl config.ClickHouseCluster) error {
	return migrateCluster(ctx, conn, db, cl, len(clusterMigrations))
}

func migrateCluster(ctx context.Context, conn driver.Conn, db string, cl config.ClickHouseCluster, upTo int) error {
	if cl.Name == "" || cl.ZooKeeperPath == "" || cl.ShardingKey == "" {
		return fmt.Errorf("cluster migrations need the cluster's name, zookeeper_path and sharding_key (clickhouse.cluster)")
	}
	// A single-server events table is not turned into a cluster silently: CREATE TABLE IF
	// NOT EXISTS would leave it as it is, and its rows would not be on the cluster.
	var engine string
	err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'events'", db).Scan(&engine)
	switch {
	case err == nil && engine != "Distributed":
		return fmt.Errorf("clickhouse.cluster is set, but %s.events on this server is a single-server table (%s): move its rows to a new database on the cluster (INSERT INTO <new>.events SELECT ... FROM %s.events) and point clickhouse.database at it", db, engine, db)
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("read %s.events: %w", db, err)
	}
	on := " ON CLUSTER " + cl.Name
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db+on); err != nil {
		return fmt.Errorf("create database %s on cluster %s: %w", db, cl.Name, err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+db+".schema_migrations_cluster"+on+" (version UInt32, applied DateTime) ENGINE = MergeTree ORDER BY version"); err != nil {
		return fmt.Errorf("create schema_migrations_cluster: %w", err)
	}
	r := strings.NewReplacer("{db}", db, "{cluster}", cl.Name, "{zk}", cl.ZooKeeperPath, "{key}", cl.ShardingKey)
	return applyMigrations(ctx, conn, db+".schema_migrations_cluster", "cluster migration", clusterMigrations[:upTo], r.Replace)
}
