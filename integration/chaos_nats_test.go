package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
)

// The chaos deployment's NATS is a JetStream cluster of three nodes, each a process of its
// own (`gatehouse run --target=nats` with nats.server_config), every stream and bucket with
// three replicas. Every connection that crosses the network goes through a link the test
// controls: each node's routes to each other node (one link per ordered pair: each node
// solicits its routes to the others through its own), the components' client connections
// to each node, and the proxy's apart from theirs (so the proxy alone can be cut off). A
// node is partitioned away by stalling every link to and from it.

// natsNodes is the cluster's size.
const natsNodes = 3

// natsNode is one node of the cluster.
type natsNode struct {
	name   string // its process (a chaos target name): nats-1, nats-2, nats-3
	server string // its server_name: n1, n2, n3
	client string // its client address (the checks connect here, not through a link)
	route  string // its cluster address
	conf   string // its nats-server configuration file
	// clients carries the components' connections to it, proxy the proxy's.
	clients, proxy *link
}

// natsCluster is the three nodes and the links between them.
type natsCluster struct {
	nodes []*natsNode
	// routes[i][j] carries node i's route to node j (nil for i == j).
	routes [natsNodes][natsNodes]*link
}

// isNATSTarget says whether a chaos target name is a NATS node.
func isNATSTarget(name string) bool { return strings.HasPrefix(name, "nats-") }

// newNATSCluster picks the nodes' addresses, opens the links and writes each node's
// configuration (its store under dirs[name]).
func newNATSCluster(t *testing.T, dirs map[string]string) *natsCluster {
	nc := &natsCluster{}
	for i := range natsNodes {
		n := &natsNode{name: fmt.Sprintf("nats-%d", i+1), server: fmt.Sprintf("n%d", i+1),
			client: "127.0.0.1:" + freePort(t), route: "127.0.0.1:" + freePort(t)}
		n.clients, n.proxy = newLink(t, n.client), newLink(t, n.client)
		nc.nodes = append(nc.nodes, n)
	}
	for i := range natsNodes {
		for j := range natsNodes {
			if i != j {
				nc.routes[i][j] = newLink(t, nc.nodes[j].route)
			}
		}
	}
	// A node tells the others where its routes are (gossip), and they connect there when
	// they have no route to it: that would go round the links. It advertises a port where
	// nothing listens, so every route is the configured one, through a link.
	nowhere := "127.0.0.1:" + freePort(t)
	for i, n := range nc.nodes {
		var routes []string
		for j := range natsNodes {
			if i != j {
				routes = append(routes, "nats-route://"+nc.routes[i][j].Addr())
			}
		}
		dirs[n.name] = t.TempDir()
		conf := fmt.Sprintf(`server_name: %s
listen: %s
max_payload: 8MB
ping_interval: "2s"
ping_max: 3
jetstream { store_dir: %q }
cluster {
  name: gatehouse-chaos
  listen: %s
  advertise: %s
  # Clients are told of no other node's address (they would go round the links).
  no_advertise: true
  routes: [%s]
}
`, n.server, n.client, filepath.Join(dirs[n.name], "jetstream"), n.route, nowhere, strings.Join(routes, ", "))
		n.conf = filepath.Join(dirs[n.name], "nats.conf")
		require.NoError(t, os.WriteFile(n.conf, []byte(conf), 0o600))
	}
	return nc
}

// node is the node of a chaos target name.
func (nc *natsCluster) node(name string) *natsNode {
	for _, n := range nc.nodes {
		if n.name == name || n.server == name {
			return n
		}
	}
	return nil
}

// componentURL is what the components (but the proxy) connect to: every node, each
// through its link.
func (nc *natsCluster) componentURL() string {
	return nc.url(func(n *natsNode) string { return n.clients.Addr() })
}

// proxyURL is what the proxy connects to: every node, through the proxy's own links.
func (nc *natsCluster) proxyURL() string {
	return nc.url(func(n *natsNode) string { return n.proxy.Addr() })
}

// directURL is every node's own address, for the test's checks.
func (nc *natsCluster) directURL() string {
	return nc.url(func(n *natsNode) string { return n.client })
}

func (nc *natsCluster) url(addr func(*natsNode) string) string {
	var urls []string
	for _, n := range nc.nodes {
		urls = append(urls, "nats://"+addr(n))
	}
	return strings.Join(urls, ",")
}

// proxyLinks are the proxy's links to every node: cut or stalled together, the proxy is
// cut off from NATS.
func (nc *natsCluster) proxyLinks() links {
	var out links
	for _, n := range nc.nodes {
		out = append(out, n.proxy)
	}
	return out
}

// partition is every link to and from node: its client links and its routes both ways.
func (nc *natsCluster) partition(node *natsNode) links {
	out := links{node.clients, node.proxy}
	for i, n := range nc.nodes {
		for j, m := range nc.nodes {
			if i != j && (n == node || m == node) {
				out = append(out, nc.routes[i][j])
			}
		}
	}
	return out
}

// proxyNode is the node the proxy is connected to (the one whose proxy link carries the
// most connections; the first when none does).
func (nc *natsCluster) proxyNode() *natsNode {
	best, most := nc.nodes[0], 0
	for _, n := range nc.nodes {
		if k := n.proxy.open(); k > most {
			best, most = n, k
		}
	}
	return best
}

// jetStream connects to url directly (no link) and runs f with JetStream, within 5 s.
func jetStreamDo(url string, f func(ctx context.Context, js jetstream.JetStream) error) error {
	conn, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer conn.Close()
	js, err := jetstream.New(conn)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f(ctx, js)
}

// jetStreamReady says whether node answers JetStream requests (it is in the cluster and
// the cluster has a meta leader).
func (n *natsNode) jetStreamReady() bool {
	return jetStreamDo("nats://"+n.client, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.AccountInfo(ctx)
		return err
	}) == nil
}

// auditLeader is the node leading GH_AUDIT (nil when none can be asked, or none leads),
// asked of every node but the ones in but.
func (nc *natsCluster) auditLeader(but ...*natsNode) *natsNode {
	var urls []string
	for _, n := range nc.nodes {
		if !slices.Contains(but, n) {
			urls = append(urls, "nats://"+n.client)
		}
	}
	var leader string
	_ = jetStreamDo(strings.Join(urls, ","), func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, bus.StreamAudit)
		if err != nil {
			return err
		}
		if ci := s.CachedInfo().Cluster; ci != nil {
			leader = ci.Leader
		}
		return nil
	})
	return nc.node(leader)
}

// startNATS starts the three nodes at once (a node's JetStream is ready only once it has
// routes to a majority) and waits until each answers JetStream requests.
func (c *chaosCluster) startNATS() {
	for _, n := range c.nats.nodes {
		c.spawn(n.name)
	}
	for _, n := range c.nats.nodes {
		c.waitNATS(n)
	}
}

// waitNATS waits until node answers JetStream requests.
func (c *chaosCluster) waitNATS(n *natsNode) {
	c.t.Helper()
	p := c.proc(n.name)
	require.Eventually(c.t, func() bool {
		select {
		case <-p.done:
			return false
		default:
		}
		return n.jetStreamReady()
	}, 90*time.Second, 100*time.Millisecond, "NATS node %s never answered JetStream requests on %s:\n%s", n.name, n.client, p.log.String())
}

// natsFaults are the NATS cluster's faults: the kill of the node leading GH_AUDIT, and a
// node partitioned away (the proxy's: the one whose clients must notice). Either way the
// load must go on — the other two nodes are a majority — so each is held until a strict
// statement and one that needed a decision, both sent after the fault began, were answered
// (within a minute), and how long that took is reported, with what it waited for: a new
// leader of GH_AUDIT when the node led it, the proxy on another node.
func natsFaults(c *chaosCluster, o chaosOptions) []fault {
	var victim *natsNode
	var watch chan []string
	// watchFrom notes when GH_AUDIT had a leader other than the victim again (when the
	// victim led it) and when the proxy was connected through another node (when it was
	// the victim's).
	watchFrom := func(injected time.Time, leader, proxy *natsNode) {
		watch = make(chan []string, 1)
		go func() {
			var notes []string
			moved := proxy != victim
			elected := leader != victim
			notes = append(notes, fmt.Sprintf("node %s; it led %s: %v; the proxy was on it: %v", victim.server, bus.StreamAudit, !elected, !moved))
			waitFor(o.partition+2*time.Minute, func() bool {
				if !elected {
					if l := c.nats.auditLeader(victim); l != nil && l != victim {
						elected = true
						notes = append(notes, fmt.Sprintf("new leader %s after %s", l.server, time.Since(injected).Round(100*time.Millisecond)))
					}
				}
				if !moved {
					for _, n := range c.nats.nodes {
						if n != victim && n.proxy.open() > 0 {
							moved = true
							notes = append(notes, fmt.Sprintf("the proxy on %s after %s", n.server, time.Since(injected).Round(100*time.Millisecond)))
							break
						}
					}
				}
				return elected && moved
			})
			watch <- notes
		}()
	}
	noted := func(_ windowCounts, r *faultResult) {
		select {
		case notes := <-watch:
			r.notes = append(r.notes, notes...)
		case <-time.After(time.Minute):
			r.notes = append(r.notes, "no new leader or the proxy still on the node a minute after the recovery")
		}
	}
	kill := fault{name: "kill -9 a NATS node (GH_AUDIT's leader)", down: o.down, goOn: true,
		inject: func() {
			if victim = c.nats.auditLeader(); victim == nil {
				c.t.Errorf("no leader of %s found", bus.StreamAudit)
				victim = c.nats.nodes[0]
			}
			proxy := c.nats.proxyNode()
			c.kill(victim.name)
			watchFrom(time.Now(), victim, proxy)
		},
		remove: func() { c.start(victim.name) },
		check:  noted,
	}
	var cut links
	partition := fault{name: "a NATS node partitioned away (the proxy's)", down: o.partition, goOn: true,
		inject: func() {
			victim = c.nats.proxyNode()
			leader := c.nats.auditLeader()
			cut = c.nats.partition(victim)
			cut.Stall()
			watchFrom(time.Now(), leader, victim)
		},
		remove: func() {
			cut.Restore()
			// Ready again: the node answers JetStream requests (it is back in the cluster).
			if _, ok := waitFor(90*time.Second, victim.jetStreamReady); !ok {
				c.t.Errorf("NATS node %s not back in the cluster 90s after the partition healed", victim.name)
			}
		},
		check: noted,
	}
	return []fault{kill, partition}
}

// links are links cut, stalled and restored together.
type links []*link

func (ls links) Cut() {
	for _, l := range ls {
		l.Cut()
	}
}

func (ls links) Stall() {
	for _, l := range ls {
		l.Stall()
	}
}

func (ls links) Restore() {
	for _, l := range ls {
		l.Restore()
	}
}
