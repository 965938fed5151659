package query

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// An agent's tool calls map to API Activity with the tool as the operation, the agent as
// the actor (invoked by the person it acts for), and a refused or denied call as a
// failure with what the agent was told.
func TestOCSFMapsMCPCalls(t *testing.T) {
	id := schemas.Identity{Subject: "agent-reports", Issuer: "iss", Kind: "agent", OnBehalfOf: "alice@example.com"}
	call := mcpEvent(t, "m-1", 2, id, "_mcp", &schemas.McpCall{QueryID: 1, Tool: "query", Target: "demo", Arguments: `{"sql":"delete from orders"}`})
	denied := mcpEvent(t, "m-1", 3, id, "_mcp", &schemas.McpResult{QueryID: 1, Status: "denied", Decision: "deny", Sqlstate: "42501", Message: "Gatehouse denied the statement"})
	ok := mcpEvent(t, "m-1", 4, id, "_mcp", &schemas.McpResult{QueryID: 2, Status: "ok", Rows: 2})

	rec := roundTrip(t, OCSF(&call))
	require.EqualValues(t, 6003, rec["class_uid"])
	require.EqualValues(t, 1, rec["status_id"])
	require.Equal(t, "tools/call query", rec["api"].(map[string]any)["operation"])
	actor := rec["actor"].(map[string]any)
	require.Equal(t, "alice@example.com", actor["invoked_by"])
	require.Equal(t, "agent", actor["user"].(map[string]any)["type"])

	rec = roundTrip(t, OCSF(&denied))
	require.EqualValues(t, 2, rec["status_id"])
	require.Equal(t, "Gatehouse denied the statement", rec["status_detail"])
	require.EqualValues(t, 1, roundTrip(t, OCSF(&ok))["status_id"])
}

func mcpEvent(t *testing.T, session string, seq uint64, id schemas.Identity, resource string, p schemas.Payload) schemas.Event {
	return schemas.Event{ID: session + "-" + itoa(seq), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: time.Unix(1764000000, 0).UTC(),
		SessionID: session, Seq: seq, Identity: id, Resource: resource, Payload: p.AppendJSON(nil)}
}
