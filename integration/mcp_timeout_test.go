package integration

import (
	"bytes"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/services/config"
)

// An approved statement has mcp.query_timeout from its approval to finish, like any other
// (the attacker's approved pg_sleep(45) ran past the 30-s bound while approval_status said
// it still waited for a person).
func TestMCPApprovedStatementIsTimeBound(t *testing.T) {
	g := startMCPGateway(t, func(c *config.Config) { c.MCP.QueryTimeout = 2 * time.Second })
	dba := g.mint(t, url.Values{"sub": {"agent-slow"}, "groups": {"dba"}, "kind": {"agent"}})
	cs := g.connect(t, dba)
	_, out := call(t, cs, "query", map[string]any{"resource": "demo", "sql": "update customers set name = name where id = 1 returning pg_sleep(8)::text"})
	require.Equal(t, "pending_approval", out.Status, out.Message)
	id := out.ApprovalID
	approver := g.mint(t, url.Values{"sub": {"approver-1"}, "groups": {"approvers"}, "kind": {"human"}})
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"approvals", "approve", id, "--reason", "slow", "--url", g.base, "--token", approver}, &stdout, &stderr), stderr.String())
	var st callResult
	require.Eventually(t, func() bool {
		_, st = call(t, cs, "approval_status", map[string]any{"approval_id": id})
		return st.Status != "pending_approval"
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "error", st.Status, st.Message)
	require.Equal(t, "57014", st.SQLState)
	require.Contains(t, st.Message, "of its approval (mcp.query_timeout)")
}
