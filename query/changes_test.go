package query

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// The changes report is a policy's or resource's history: per change the time, who (name
// and subject), kind, name, action, source, the diff and the revision it made; narrowed to
// one kind and name for a page about one policy; a change recorded twice is shown once.
func TestChangesReportIsTheHistoryOfEachPolicyAndResource(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+trailColumns+")")
	require.NoError(t, err)
	t0 := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	add := func(s int, session, sub, name string, rev uint64, p *schemas.PolicyChanged) {
		at := t0.Add(time.Duration(s) * time.Second)
		require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), session+"-1", schemas.TypePolicyChanged, schemas.Codes[schemas.TypePolicyChanged], session, uint64(1), "_config",
			sub, name, "iss", []string{}, "human", "", rev, "", "", string(p.AppendJSON(nil)), uint64(0), uint32(0)))
	}
	diff1 := "--- a\n+++ b\n@@ -1 +1,2 @@\n name: orders\n+rules: []\n"
	add(0, "c1", "config-file", "", 0, &schemas.PolicyChanged{Kind: "policy", Name: "orders", Action: "created", Diff: "+name: orders\n", Source: "config"})
	add(1, "c2", "config-file", "", 0, &schemas.PolicyChanged{Kind: "resource", Name: "demo", Action: "created", Diff: "+name: demo\n", Source: "config"})
	add(60, "c3", "u-admin", "admin@example.com", 77, &schemas.PolicyChanged{Kind: "policy", Name: "orders", Action: "updated", Diff: diff1, Source: "api"})
	add(61, "c4", "u-admin", "admin@example.com", 77, &schemas.PolicyChanged{Kind: "policy", Name: "billing", Action: "created", Diff: "+name: billing\n", Source: "api"})
	require.NoError(t, b.Send())
	// c3 stored twice (an insert retried).
	require.NoError(t, conn.Exec(ctx, "INSERT INTO gh.events ("+trailColumns+") SELECT "+trailColumns+" FROM gh.events WHERE session_id = 'c3'"))

	a := New(conn, "gh", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	since, until := url.QueryEscape(t0.Add(-time.Hour).Format(time.RFC3339)), url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339))
	report := func(extra string) (Coverage, []map[string]string) {
		t.Helper()
		code, body := call(t, a, "changes", "since="+since+"&until="+until+extra)
		require.Equal(t, http.StatusOK, code, body)
		var out struct {
			Coverage
			Rows []map[string]string `json:"rows"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		return out.Coverage, out.Rows
	}
	ts := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format("2006-01-02 15:04:05") }
	change := func(s int, by, sub, kind, name, action, source, diff, rev string) map[string]string {
		return map[string]string{"time": ts(s), "by": by, "by_subject": sub, "kind": kind, "name": name, "action": action, "source": source, "diff": diff, "revision": rev}
	}
	orders := []map[string]string{
		change(0, "config-file", "config-file", "policy", "orders", "created", "config", "+name: orders\n", "0"),
		change(60, "admin@example.com", "u-admin", "policy", "orders", "updated", "api", diff1, "77"),
	}

	_, rows := report("")
	require.Equal(t, []map[string]string{orders[0],
		change(1, "config-file", "config-file", "resource", "demo", "created", "config", "+name: demo\n", "0"),
		orders[1],
		change(61, "admin@example.com", "u-admin", "policy", "billing", "created", "api", "+name: billing\n", "77"),
	}, rows)

	cov, rows := report("&kind=policy&name=orders")
	require.Equal(t, orders, rows)
	require.Equal(t, Filters{Kind: "policy", Name: "orders"}, cov.Filters)
	require.Contains(t, cov.Summary(), "; kind policy; name orders; 2 row(s)")
	_, rows = report("&kind=resource")
	require.Len(t, rows, 1)
	require.Equal(t, "demo", rows[0]["name"])
	_, rows = report("&kind=resource&name=orders")
	require.Empty(t, rows)

	code, body := call(t, a, "changes", "kind=role")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "kind is policy or resource")
}
