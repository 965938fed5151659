package config

import (
	"regexp"
	"strings"
)

// ClickHouse is the audit store.
type ClickHouse struct {
	// Address is the native-protocol host:port of a server, or several separated by commas
	// (tried in order: the next when one cannot be reached).
	Address  string `yaml:"address"`
	Database string `yaml:"database"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Cluster, when its name is set, makes the schema a replicated, sharded one (see
	// docs/operations.md, "ClickHouse cluster"). Unset: one server, as before.
	Cluster ClickHouseCluster `yaml:"cluster"`
}

// ClickHouseCluster places the audit trail on a ClickHouse cluster: events_local
// (ReplicatedReplacingMergeTree) on every server, created ON CLUSTER, and events, a
// Distributed table over it, that ingest inserts into (synchronously) and everything reads.
type ClickHouseCluster struct {
	// Name is the cluster as the servers' remote_servers names it; its shards and
	// replicas are the layout. Empty: not a cluster.
	Name string `yaml:"name"`
	// ZooKeeperPath is the ReplicatedMergeTree path prefix; it must hold the {shard}
	// macro so that each shard is its own set of replicas (the table's path is
	// <prefix>/events_local, its replica name {replica}). Default
	// /clickhouse/tables/{shard}/<database>.
	ZooKeeperPath string `yaml:"zookeeper_path"`
	// ShardingKey places rows on shards. It must be a hash of session_id alone: every copy
	// of an event (same id, same session) and a whole session then land on one shard, so
	// deduplication by id (ReplacingMergeTree, FINAL, LIMIT 1 BY id) stays exact and a
	// session is read from one place. Default cityHash64(session_id).
	ShardingKey string `yaml:"sharding_key"`
	// InsertQuorum, when above 1, makes an insert wait until that many replicas of its
	// shard have the rows before ingest acknowledges them (ClickHouse's insert_quorum).
	// 0: one replica has them (the others fetch them shortly after).
	InsertQuorum int `yaml:"insert_quorum"`
}

// Enabled tells whether the store is a cluster.
func (c ClickHouseCluster) Enabled() bool { return c.Name != "" }

// Addresses are the servers of Address, in order.
func (c ClickHouse) Addresses() []string {
	var out []string
	for _, a := range strings.Split(c.Address, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (c *ClickHouse) applyDefaults() {
	def(&c.Database, "gatehouse")
	def(&c.Username, "default")
	if c.Cluster.Enabled() {
		def(&c.Cluster.ZooKeeperPath, "/clickhouse/tables/{shard}/"+c.Database)
		def(&c.Cluster.ShardingKey, "cityHash64(session_id)")
	}
}

var (
	chIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// A ZooKeeper path: slash-separated names and macros, nothing that needs quoting in SQL.
	chZooKeeperPath = regexp.MustCompile(`^(/[A-Za-z0-9_.{}\-]+)+$`)
	chShardingKey   = regexp.MustCompile(`^(cityHash64|sipHash64|farmHash64)\(\s*session_id\s*\)$`)
)

func (c *ClickHouse) validate(path string, ck *checker) {
	if c.Address != "" {
		for _, a := range strings.Split(c.Address, ",") {
			ck.hostPort(path+".address", strings.TrimSpace(a))
		}
	}
	if !chIdentifier.MatchString(c.Database) {
		ck.add(path+".database", "%q is not a plain name (letters, digits, _)", c.Database)
	}
	cl := c.Cluster
	if !cl.Enabled() {
		if cl.ZooKeeperPath != "" || cl.ShardingKey != "" || cl.InsertQuorum != 0 {
			ck.add(path+".cluster.name", "required when other cluster settings are set (the cluster as the servers' remote_servers name it)")
		}
		return
	}
	p := path + ".cluster"
	if !chIdentifier.MatchString(cl.Name) {
		ck.add(p+".name", "%q is not a plain name (letters, digits, _) as in the servers' remote_servers", cl.Name)
	}
	switch {
	case !chZooKeeperPath.MatchString(cl.ZooKeeperPath):
		ck.add(p+".zookeeper_path", "%q is not an absolute ZooKeeper path of names and {macros}", cl.ZooKeeperPath)
	case !strings.Contains(cl.ZooKeeperPath, "{shard}"):
		ck.add(p+".zookeeper_path", "%q has no {shard} macro: every shard would replicate every other's rows, and reads through the Distributed table would count them once per shard", cl.ZooKeeperPath)
	}
	if !chShardingKey.MatchString(cl.ShardingKey) {
		ck.add(p+".sharding_key", "%q is not a hash of session_id alone (cityHash64(session_id), sipHash64(session_id) or farmHash64(session_id)): copies of an event must land on one shard for deduplication by id to be exact", cl.ShardingKey)
	}
	if cl.InsertQuorum < 0 || cl.InsertQuorum > 16 {
		ck.add(p+".insert_quorum", "%d is outside 0..16", cl.InsertQuorum)
	}
}
