package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
)

// Every reader answers the same on a ClickHouse cluster (2 shards through Debian's
// ZooKeeper; events a Distributed table over events_local) as on one server, for one trail
// stored in both with some events twice (as a redelivery leaves them): the session list
// and its filters (FINAL, GROUP BY, HAVING over shards), replay, terminals, verify, the
// NDJSON and OCSF exports, every evidence report (LIMIT 1 BY id, JOINs and IN over
// subqueries) and the charts, on ClickHouse 18.16.
func TestReadersOnACluster(t *testing.T) {
	ctx := context.Background()
	single := startStore(t)
	zk := chtest.StartZooKeeper(t)
	cl := chtest.StartCluster(t, zk, 2, 1)
	cfg := config.ClickHouse{Address: cl.Addrs(), Database: "gh", Username: "default", Cluster: config.ClickHouseCluster{
		Name: chtest.ClusterName, ZooKeeperPath: "/clickhouse/tables/{shard}/gh", ShardingKey: "cityHash64(session_id)"}}
	cluster, err := ingest.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { cluster.Close() })
	require.NoError(t, ingest.MigrateStore(ctx, cluster, cfg))

	trail := [][]schemas.Event{sshEvents(t, "ssh-1"), httpEvents(t, "http-1"), kubeEvents(t, "kube-1"), controlEvents(t), writeEvents(t, "pg-write")}
	for i := 0; i < 16; i++ {
		trail = append(trail, pgEvents(t, fmt.Sprintf("pg-%02d", i)))
	}
	// Each session was one JetStream message; the second insert of three sessions is their
	// redelivery (same stream positions).
	for _, conn := range []driver.Conn{single, cluster} {
		insertEvents(t, conn, trail...)
		insertEvents(t, conn, trail[0], trail[1], trail[4])
	}
	// The trail is on both shards.
	for i, s := range cl.Servers {
		c, err := ingest.Open(config.ClickHouse{Address: s.Addr(), Username: "default"})
		require.NoError(t, err)
		defer c.Close()
		var n uint64
		require.NoError(t, c.QueryRow(ctx, "SELECT uniqExact(session_id) FROM gh.events_local").Scan(&n))
		require.NotZero(t, n, "shard %d has no session", i+1)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	one, many := New(single, "gh", nil, nil, log), New(cluster, "gh", nil, nil, log)
	same := func(h func(*API) echo.HandlerFunc, target string, params ...string) string {
		t.Helper()
		c1, b1 := get(t, h(one), target, params...)
		c2, b2 := get(t, h(many), target, params...)
		require.Equal(t, http.StatusOK, c1, "%s: %s", target, b1)
		require.Equal(t, c1, c2, "%s: %s", target, b2)
		require.Equal(t, b1, b2, target)
		return b1
	}
	rng := "since=2026-01-01T00:00:00Z&until=2027-01-01T00:00:00Z"

	body := same(func(a *API) echo.HandlerFunc { return a.listSessions }, "/api/v1/sessions?"+rng+"&limit=1000")
	var list struct{ Sessions []Session }
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Sessions, len(trail)-1) // the control events have no session.start
	for _, q := range []string{"protocol=ssh", "protocol=postgres&limit=5", "effect=denied", "text=/orders/7", "resource=web-1", "identity=u-ada"} {
		same(func(a *API) echo.HandlerFunc { return a.listSessions }, "/api/v1/sessions?"+q)
	}
	for _, s := range trail {
		id := s[0].SessionID
		same(func(a *API) echo.HandlerFunc { return a.replay }, "/api/v1/sessions/"+id, "id", id)
		same(func(a *API) echo.HandlerFunc { return a.verify }, "/api/v1/audit/verify?session="+id)
	}
	for _, id := range []string{"ssh-1", "kube-1"} {
		same(func(a *API) echo.HandlerFunc { return a.terminals }, "/api/v1/sessions/"+id+"/terminals", "id", id)
	}
	// verify over a range: the same sessions and counts (their order may differ).
	var v1, v2 Verification
	_, b := get(t, one.verify, "/api/v1/audit/verify?since=2026-01-01T00:00:00Z")
	require.NoError(t, json.Unmarshal([]byte(b), &v1))
	_, b = get(t, many.verify, "/api/v1/audit/verify?since=2026-01-01T00:00:00Z")
	require.NoError(t, json.Unmarshal([]byte(b), &v2))
	require.Equal(t, v1.Sessions, v2.Sessions)
	require.Equal(t, v1.Events, v2.Events)
	require.Equal(t, problemSet(v1), problemSet(v2))

	events := 0
	for _, s := range trail {
		events += len(s)
	}
	body = same(func(a *API) echo.HandlerFunc { return a.export }, "/api/v1/export?limit=10000")
	require.Equal(t, events, countLines(body), "every event once in the export")
	same(func(a *API) echo.HandlerFunc { return a.export }, "/api/v1/export?limit=7")
	same(func(a *API) echo.HandlerFunc { return a.export }, "/api/v1/export?format=ocsf&limit=10000")

	for _, r := range []struct{ kind, query string }{
		{"access", rng}, {"denials", rng}, {"privileged", rng}, {"grants", rng}, {"changes", rng},
		{"access", rng + "&format=csv"}, {"privileged", rng + "&label=team=orders&format=csv"},
	} {
		c1, b1 := call(t, one, r.kind, r.query)
		c2, b2 := call(t, many, r.kind, r.query)
		require.Equal(t, http.StatusOK, c1, "%s: %s", r.kind, b1)
		require.Equal(t, c1, c2, "%s: %s", r.kind, b2)
		require.Equal(t, b1, b2, r.kind)
		if r.query == rng {
			var rep struct {
				RowCount int `json:"row_count"`
			}
			require.NoError(t, json.Unmarshal([]byte(b1), &rep), r.kind)
			require.NotZero(t, rep.RowCount, "%s: nothing to compare", r.kind)
		}
	}
	body = same(func(a *API) echo.HandlerFunc { return a.charts }, "/api/v1/evidence/charts?"+rng+"&bucket=day")
	require.Contains(t, body, "approver")
}

// controlEvents are grants and policy changes, outside any proxy session.
func controlEvents(t *testing.T) []schemas.Event {
	c := &chainedEvents{t: t, session: "ctl-1", resource: "_config", at: httpStart}
	expires := httpStart.Add(2 * time.Hour)
	c.add(0, &schemas.PolicyChanged{Kind: "policy", Name: "demo-baseline", Action: "update", Diff: "+ rule", Source: "api"})
	c.add(time.Second, &schemas.GrantCreated{GrantID: "g1", Resource: "orders-api", Role: "reader", Expires: expires, ApprovedBy: []string{"approver-1"}, Reason: "incident"})
	c.add(time.Second, &schemas.GrantRevoked{GrantID: "g1", Resource: "orders-api", Role: "reader", Expires: expires, By: "approver-2", Reason: "done"})
	return c.out
}

// writeEvents is a PostgreSQL session on a production resource with a DELETE allowed.
func writeEvents(t *testing.T, session string) []schemas.Event {
	c := &chainedEvents{t: t, session: session, resource: "demo", at: httpStart}
	c.add(0, &schemas.SessionStart{Labels: []string{"env=production", "team=orders"}, Protocol: "postgres", ClientAddr: "127.0.0.1:5000", AuditMode: "strict"})
	c.add(time.Millisecond, &schemas.DbQuery{QueryID: 1, SQL: "delete from orders where id = 1", Protocol: "simple"})
	c.add(time.Millisecond, &schemas.Decision{QueryID: 1, Effect: "allow", Kinds: []string{"delete"}, Rule: "writes"})
	c.add(time.Millisecond, &schemas.DbQueryDone{QueryID: 1, Status: "ok", CommandTags: []string{"DELETE 1"}})
	c.add(time.Millisecond, &schemas.SessionEnd{Reason: "client"})
	return c.out
}

// insertEvents writes sessions into the store as ingest does (through events: the
// Distributed table on a cluster).
func insertEvents(t *testing.T, conn driver.Conn, sessions ...[]schemas.Event) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), "INSERT INTO gh.events ("+ingest.EventColumns+")")
	require.NoError(t, err)
	for _, s := range sessions {
		for i, e := range s {
			groups := e.Identity.Groups
			if groups == nil {
				groups = []string{}
			}
			require.NoError(t, b.Append(e.Time, e.Time, uint64(e.Time.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource,
				e.Identity.Subject, e.Identity.Name, e.Identity.Issuer, groups, e.Identity.Kind, e.Identity.OnBehalfOf, e.PolicyRevision,
				e.PrevHash, e.Hash, string(e.Payload), streamSeq(e.SessionID), uint32(i)))
		}
	}
	require.NoError(t, b.Send())
}

// streamSeq is the stream sequence of a session's message in the test's trail: a number
// made from its id, the same whenever the session is inserted.
func streamSeq(session string) uint64 {
	var n uint64
	for _, c := range []byte(session) {
		n = n*131 + uint64(c)
	}
	return n % (1 << 40)
}

func problemSet(v Verification) []string {
	var out []string
	for _, p := range v.Problems {
		out = append(out, fmt.Sprintf("%s %d %s", p.Session, p.Seq, p.Kind))
	}
	sort.Strings(out)
	return out
}

func countLines(s string) int {
	n := 0
	for _, c := range s {
		if c == '\n' {
			n++
		}
	}
	return n
}
