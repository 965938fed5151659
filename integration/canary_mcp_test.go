package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"
)

// The canary fuzzer drives the MCP server's query tool too: the same statements, through
// the tool, must leak no canary in the tool's answer (its text and structured content)
// nor in the MCP sessions' trail (resource _mcp).

// connectMCPAt is the SDK's client on endpoint with token.
func connectMCPAt(t *testing.T, endpoint, token string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "canary-fuzzer", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint,
		HTTPClient: &http.Client{Transport: &bearer{token, http.DefaultTransport}}, DisableStandaloneSSE: true}, nil)
	require.NoError(t, err)
	return cs
}

// runMCPQuery runs sql on resource through the query tool and returns everything the
// agent got, and how it went: passed (it ran), refused (by policy, as the proxy refuses:
// 42501 from the gateway), bounded (refused by the MCP server's own bounds before any
// decision: a statement over mcp.max_sql_bytes) or failed.
func runMCPQuery(cs *mcp.ClientSession, resource, sql string) (out []byte, outcome string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "query", Arguments: map[string]any{"resource": resource, "sql": sql}})
	if err != nil {
		return []byte(err.Error()), "failed"
	}
	out, _ = json.Marshal(res)
	var r struct {
		Status   string `json:"status"`
		SQLState string `json:"sqlstate"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	_ = json.Unmarshal(b, &r)
	switch {
	case r.Status == "ok" || r.Status == "limited":
		return out, "passed"
	case r.Status == "denied" && r.SQLState == "42501":
		return out, "refused"
	case r.Status == "refused":
		return out, "bounded"
	}
	return out, "failed"
}
