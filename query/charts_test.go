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

// The charts: statements and denials per resource and hour (or day), UTC, an event stored
// twice counted once, configuration records left out; approvals per approver with the time
// from request to decision (held requests and fail-fast approvals used), named where the
// trail knows the name; the number of buckets bounded. On the ClickHouse the tests start
// (Debian's 18.16).
func TestChartsCountActivityAndApprovals(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+trailColumns+")")
	require.NoError(t, err)
	t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	seq := map[string]uint64{}
	add := func(session, resource, sub, name string, when time.Time, p schemas.Payload) {
		t.Helper()
		seq[session]++
		typ := p.EventType()
		require.NoError(t, b.Append(when, when, uint64(when.UnixMicro()), session+"-"+itoa(seq[session]), typ, schemas.Codes[typ], session, seq[session], resource,
			sub, name, "iss", []string{}, "human", "", uint64(1), "", "", string(p.AppendJSON(nil)), uint64(0), uint32(0)))
	}
	stmt := func(session, resource string, s int, qid uint64, effect string) {
		add(session, resource, "u-dev", "dev@example.com", at(s), &schemas.DbQuery{QueryID: qid, SQL: "q", Protocol: "simple"})
		add(session, resource, "u-dev", "dev@example.com", at(s), &schemas.Decision{QueryID: qid, Effect: effect})
	}
	// demo: 3 statements at 10:xx (1 denied), 2 at 12:xx (1 denied); web-1: 2 SSH requests
	// at 10:xx, 1 denied; an HTTP request on orders-api the next day.
	stmt("s1", "demo", 1, 1, "allow")
	stmt("s1", "demo", 2, 2, "deny")
	stmt("s1", "demo", 3, 3, "require_approval")
	stmt("s1", "demo", 7200, 4, "deny")
	stmt("s1", "demo", 7300, 5, "mask")
	add("s2", "web-1", "u-ops", "ops@example.com", at(5), &schemas.SshRequest{QueryID: 1, Request: "exec", Command: "uptime"})
	add("s2", "web-1", "u-ops", "ops@example.com", at(5), &schemas.Decision{QueryID: 1, Effect: "allow"})
	add("s2", "web-1", "u-ops", "ops@example.com", at(6), &schemas.SshRequest{QueryID: 2, Request: "exec", Command: "rm -rf /"})
	add("s2", "web-1", "u-ops", "ops@example.com", at(6), &schemas.Decision{QueryID: 2, Effect: "deny"})
	add("s3", "orders-api", "u-dev", "", at(86400+60), &schemas.HttpRequest{QueryID: 1, Method: "GET", Path: "/orders"})
	add("c1", "_config", "u-admin", "", at(10), &schemas.PolicyChanged{Kind: "policy", Name: "p", Action: "updated"})

	// Approvals held: approver-1 decides in 10, 30 and 50 seconds (one a denial);
	// approver-2 once, on a request older than the trail holds (no time). Fail-fast: a1x
	// used, approved by approver-2 and approver-3 20 s after its request.
	held := func(id string, requested, decided int, by, decision string) {
		if requested >= 0 {
			add("s1", "demo", "u-dev", "dev@example.com", at(requested), &schemas.ApprovalRequested{ApprovalID: id, Kind: "statement", Mode: "hold"})
		}
		d := &schemas.ApprovalDecided{ApprovalID: id, Decision: decision, By: by, Via: "slack", Outcome: "approved"}
		if decision == "deny" {
			d.Reason, d.Outcome = "no", "denied"
		}
		add("s1", "demo", "u-dev", "dev@example.com", at(decided), d)
	}
	held("a1", 100, 110, "approver-1", "approve")
	held("a2", 200, 230, "approver-1", "deny")
	held("a3", 300, 350, "approver-1", "approve")
	held("a4", -1, 400, "approver-2", "approve")
	add("s1", "demo", "u-dev", "dev@example.com", at(500), &schemas.ApprovalUsed{ApprovalID: "a5", SessionID: "s1", QueryID: 9,
		ApprovedBy: []string{"approver-2", "approver-3"}, RequestedAt: at(440).Format(time.RFC3339Nano), ApprovedAt: at(460).Format(time.RFC3339Nano)})
	// approver-1's name, from an event of theirs.
	add("s4", "demo", "approver-1", "one@example.com", at(20), &schemas.SessionStart{Protocol: "postgres"})
	require.NoError(t, b.Send())
	// s1's first statement stored twice (an insert retried): counted once.
	require.NoError(t, conn.Exec(ctx, "INSERT INTO gh.events ("+trailColumns+") SELECT "+trailColumns+" FROM gh.events WHERE session_id = 's1' AND seq IN (1, 2)"))

	a := New(conn, "gh", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	charts := func(q string) (int, Charts, string) {
		t.Helper()
		code, body := get(t, a.charts, "/api/v1/evidence/charts?"+q)
		var out Charts
		if code == http.StatusOK {
			require.NoError(t, json.Unmarshal([]byte(body), &out))
		}
		return code, out, body
	}
	rng := func(since, until time.Time) string {
		return "since=" + url.QueryEscape(since.Format(time.RFC3339)) + "&until=" + url.QueryEscape(until.Format(time.RFC3339))
	}
	code, c, body := charts(rng(t0.Add(-time.Hour), t0.Add(47*time.Hour)))
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "hour", c.Bucket)
	require.Equal(t, t0.Add(-time.Hour), c.Since)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	require.Equal(t, []ActivityPoint{
		{Time: h(0), Resource: "demo", Statements: 3, Denied: 1},
		{Time: h(0), Resource: "web-1", Statements: 2, Denied: 1},
		{Time: h(2), Resource: "demo", Statements: 2, Denied: 1},
		{Time: h(24), Resource: "orders-api", Statements: 1, Denied: 0},
	}, c.Activity)
	f := func(x float64) *float64 { return &x }
	require.Equal(t, []ApproverStats{
		{Approver: "one@example.com", Subject: "approver-1", Decided: 3, Approved: 2, Denied: 1, MedianSeconds: f(30), P90Seconds: f(50)},
		{Approver: "approver-2", Subject: "approver-2", Decided: 2, Approved: 2, MedianSeconds: f(20), P90Seconds: f(20)},
		{Approver: "approver-3", Subject: "approver-3", Decided: 1, Approved: 1, MedianSeconds: f(20), P90Seconds: f(20)},
	}, c.Approvals)

	// By day; a range that holds part of it.
	code, c, body = charts(rng(t0.Add(-time.Hour), t0.Add(47*time.Hour)) + "&bucket=day")
	require.Equal(t, http.StatusOK, code, body)
	day := t0.Truncate(24 * time.Hour)
	require.Equal(t, []ActivityPoint{
		{Time: day, Resource: "demo", Statements: 5, Denied: 2},
		{Time: day, Resource: "web-1", Statements: 2, Denied: 1},
		{Time: day.Add(24 * time.Hour), Resource: "orders-api", Statements: 1},
	}, c.Activity)
	code, c, body = charts(rng(t0.Add(2*time.Hour), t0.Add(3*time.Hour)))
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, []ActivityPoint{{Time: h(2), Resource: "demo", Statements: 2, Denied: 1}}, c.Activity)
	require.Equal(t, []ApproverStats{}, c.Approvals)

	// The number of buckets is bounded: a long range defaults to days, and hours over it
	// are refused with what to ask instead.
	code, c, body = charts(rng(t0.Add(-60*24*time.Hour), t0))
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "day", c.Bucket)
	code, _, body = charts(rng(t0.Add(-60*24*time.Hour), t0) + "&bucket=hour")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "1441 hour buckets, over the 1000 a chart may have: ask for bucket=day or a shorter range")
	code, _, body = charts(rng(t0.Add(-1200*24*time.Hour), t0))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "day buckets, over the 1000 a chart may have: ask for a shorter range")
	for _, q := range []string{"bucket=week", "since=yesterday", rng(t0, t0.Add(-time.Hour))} {
		code, _, _ := charts(q)
		require.Equal(t, http.StatusBadRequest, code, q)
	}
	code, c, _ = charts("")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "hour", c.Bucket, "the default: the last 30 days by hour")
	require.Equal(t, 30*24*time.Hour, c.Until.Sub(c.Since))
}
