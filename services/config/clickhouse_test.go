package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// A cluster is a configuration choice with defaults that keep deduplication by id exact;
// what would break it is refused with the field and the reason.
func TestClickHouseClusterConfig(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	base := strings.Replace(valid, `clickhouse: {address: "127.0.0.1:9000"}`+"\n", "", 1)
	load := func(ch string) (*config.Config, error) {
		c, err := config.Parse([]byte(base + ch))
		require.NoError(t, err)
		return c, c.Validate()
	}
	c, err := load(`clickhouse: {address: "ch1:9000, ch2:9000", cluster: {name: audit}}`)
	require.NoError(t, err)
	require.Equal(t, []string{"ch1:9000", "ch2:9000"}, c.ClickHouse.Addresses())
	require.True(t, c.ClickHouse.Cluster.Enabled())
	require.Equal(t, "/clickhouse/tables/{shard}/gatehouse", c.ClickHouse.Cluster.ZooKeeperPath)
	require.Equal(t, "cityHash64(session_id)", c.ClickHouse.Cluster.ShardingKey)

	c, err = load(`clickhouse: {address: "127.0.0.1:9000"}`)
	require.NoError(t, err)
	require.False(t, c.ClickHouse.Cluster.Enabled())

	for _, tc := range []struct{ yaml, want string }{
		{`clickhouse: {address: "ch1:9000,ch2"}`, `clickhouse.address: "ch2" is not host:port`},
		{`clickhouse: {address: "ch1:9000", cluster: {sharding_key: "rand()"}}`, "clickhouse.cluster.name: required when other cluster settings are set"},
		{`clickhouse: {address: "ch1:9000", cluster: {name: "a b"}}`, `clickhouse.cluster.name: "a b" is not a plain name`},
		{`clickhouse: {address: "ch1:9000", cluster: {name: c, sharding_key: "rand()"}}`, `clickhouse.cluster.sharding_key: "rand()" is not a hash of session_id alone`},
		{`clickhouse: {address: "ch1:9000", cluster: {name: c, sharding_key: "cityHash64(id)"}}`, `clickhouse.cluster.sharding_key: "cityHash64(id)" is not a hash of session_id alone`},
		{`clickhouse: {address: "ch1:9000", cluster: {name: c, zookeeper_path: "/clickhouse/tables/gh"}}`, `clickhouse.cluster.zookeeper_path: "/clickhouse/tables/gh" has no {shard} macro`},
		{`clickhouse: {address: "ch1:9000", cluster: {name: c, zookeeper_path: "/x/{shard}/'; DROP"}}`, `clickhouse.cluster.zookeeper_path: "/x/{shard}/'; DROP" is not an absolute ZooKeeper path`},
		{`clickhouse: {address: "ch1:9000", cluster: {name: c, insert_quorum: -1}}`, `clickhouse.cluster.insert_quorum: -1 is outside 0..16`},
		{`clickhouse: {address: "ch1:9000", database: "gh-prod"}`, `clickhouse.database: "gh-prod" is not a plain name`},
	} {
		_, err := load(tc.yaml)
		require.ErrorContains(t, err, tc.want, tc.yaml)
	}
}
