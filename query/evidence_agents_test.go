package query

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// The agents report: an agent's tool calls per person it acted for, resource and tool,
// each counted by how it ended, with the rows returned; a call without its result counts
// as no_result; other sessions' events are not in it.
func TestEvidenceAgentsReport(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+trailColumns+")")
	require.NoError(t, err)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	seq := map[string]uint64{}
	add := func(session, resource, obo string, s int, p schemas.Payload) {
		seq[session]++
		at := t0.Add(time.Duration(s) * time.Second)
		typ := p.EventType()
		require.NoError(t, b.Append(at, at, uint64(at.UnixMicro()), session+"-"+itoa(seq[session]), typ, schemas.Codes[typ], session, seq[session], resource,
			"agent-reports", "", "iss", []string{}, "agent", obo, uint64(1), "", "", string(p.AppendJSON(nil)), uint64(0), uint32(0)))
	}
	tool := func(session, obo string, s int, n uint64, name, target, status string, rows uint64) {
		add(session, "_mcp", obo, s, &schemas.McpCall{QueryID: n, Tool: name, Target: target})
		if status != "" {
			add(session, "_mcp", obo, s, &schemas.McpResult{QueryID: n, Status: status, Rows: rows})
		}
	}
	add("m1", "_mcp", "alice@example.com", 0, &schemas.SessionStart{Protocol: "mcp"})
	tool("m1", "alice@example.com", 1, 1, "query", "demo", "ok", 3)
	tool("m1", "alice@example.com", 2, 2, "query", "demo", "denied", 0)
	tool("m1", "alice@example.com", 3, 3, "query", "demo", "limited", 200)
	tool("m1", "alice@example.com", 4, 4, "query", "demo", "pending_approval", 0)
	tool("m1", "alice@example.com", 5, 5, "list_resources", "", "ok", 0)
	tool("m1", "alice@example.com", 6, 6, "query", "demo", "", 0)
	add("m2", "_mcp", "bob@example.com", 7, &schemas.SessionStart{Protocol: "mcp"})
	tool("m2", "bob@example.com", 8, 1, "query", "demo", "refused", 0)
	// The proxy's session of a statement: not an agent's tool call.
	add("p1", "demo", "alice@example.com", 1, &schemas.DbQuery{QueryID: 1, SQL: "select 1", Protocol: "simple"})
	require.NoError(t, b.Send())

	a := New(conn, "gh", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	code, body := call(t, a, "agents", "since=2026-03-01T00:00:00Z&until=2026-03-03T00:00:00Z&format=json")
	require.Equal(t, http.StatusOK, code, body)
	var out struct {
		Rows []map[string]string `json:"rows"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	require.Len(t, out.Rows, 3)
	q := out.Rows[0]
	require.Equal(t, map[string]string{"identity": "agent-reports", "subject": "agent-reports", "on_behalf_of": "alice@example.com", "resource": "",
		"tool": "list_resources", "calls": "1", "ok": "1", "limited": "0", "denied": "0", "pending_approval": "0", "expired": "0", "refused": "0",
		"error": "0", "no_result": "0", "rows": "0", "first": q["first"], "last": q["last"]}, q)
	q = out.Rows[1]
	require.Equal(t, "query", q["tool"])
	require.Equal(t, "demo", q["resource"])
	require.Equal(t, []string{"5", "1", "1", "1", "1", "1", "203"}, []string{q["calls"], q["ok"], q["limited"], q["denied"], q["pending_approval"], q["no_result"], q["rows"]})
	require.Equal(t, "bob@example.com", out.Rows[2]["on_behalf_of"])
	require.Equal(t, "1", out.Rows[2]["refused"])
}
