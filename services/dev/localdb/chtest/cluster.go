package chtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/localdb"
)

// ClusterName is the cluster's name in the servers' remote_servers.
const ClusterName = "gh"

// Cluster is ClickHouse servers that form cluster ClusterName, with the ZooKeeper their
// replicated tables and ON CLUSTER statements use.
type Cluster struct {
	ZooKeeper *localdb.ZooKeeper
	// Servers, shard by shard: Servers[s*replicas+r] is replica r of shard s.
	Servers []*localdb.ClickHouse
}

// Addrs are the servers' native-protocol addresses, comma-separated (clickhouse.address).
func (c *Cluster) Addrs() string {
	var a []string
	for _, s := range c.Servers {
		a = append(a, s.Addr())
	}
	return strings.Join(a, ",")
}

// StartZooKeeper starts ZooKeeper for t, or skips t when Debian's zookeeper package is not
// installed (deploy/install-deps.sh test installs it).
func StartZooKeeper(t testing.TB) *localdb.ZooKeeper {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	zk, err := localdb.StartZooKeeper(ctx, t.TempDir())
	if errors.Is(err, localdb.ErrNotInstalled) {
		t.Skipf("ZooKeeper is needed for a ClickHouse cluster: %v", err)
	}
	if err != nil {
		t.Fatalf("start zookeeper: %v", err)
	}
	t.Cleanup(func() {
		if err := zk.Stop(); err != nil {
			t.Logf("stop zookeeper: %v", err)
		}
	})
	return zk
}

// StartCluster starts shards × replicas ClickHouse servers on free loopback ports that
// know each other as cluster ClusterName (internal_replication: the replicas of a shard
// replicate through zk), with the macros {shard} (01, 02, ...) and {replica} (r1, r2, ...)
// and distributed DDL (ON CLUSTER) through zk.
func StartCluster(t testing.TB, zk *localdb.ZooKeeper, shards, replicas int) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ports := make([]int, shards*replicas)
	for i := range ports {
		p, err := localdb.FreePort()
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ports[i] = p
	}
	var remote strings.Builder
	remote.WriteString("<remote_servers><" + ClusterName + ">")
	for s := 0; s < shards; s++ {
		remote.WriteString("<shard><internal_replication>true</internal_replication>")
		for r := 0; r < replicas; r++ {
			fmt.Fprintf(&remote, "<replica><host>127.0.0.1</host><port>%d</port></replica>", ports[s*replicas+r])
		}
		remote.WriteString("</shard>")
	}
	remote.WriteString("</" + ClusterName + "></remote_servers>")
	c := &Cluster{ZooKeeper: zk}
	for i, port := range ports {
		extra := remote.String() + fmt.Sprintf(`
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <zookeeper><node><host>127.0.0.1</host><port>%d</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
  <macros><shard>%02d</shard><replica>r%d</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>`, zk.Port, i/replicas+1, i%replicas+1)
		ch, err := localdb.StartClickHouseWith(ctx, t.TempDir(), port, extra)
		if err != nil {
			t.Fatalf("start clickhouse %d of the cluster: %v", i+1, err)
		}
		t.Cleanup(func() {
			if err := ch.Stop(); err != nil {
				t.Logf("stop clickhouse: %v", err)
			}
		})
		c.Servers = append(c.Servers, ch)
	}
	return c
}
