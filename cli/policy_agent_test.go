package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// agentPolicies adds to the demo a rule on request.agent and identity.kind, with test cases.
func agentPolicies(t *testing.T, cases string) string {
	t.Helper()
	src, err := os.ReadFile("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	s := strings.Replace(string(src), "policies:\n", `policies:
  - name: agents
    resources: ["*"]
    rules:
      - name: no-evil-agent
        effect: deny
        when: request.agent.tool == "query" && request.agent.client.name == "evil-agent"
        reason: this MCP client may not run statements here
      - name: agents-for-alice-only
        effect: deny
        when: identity.kind == "agent" && identity.on_behalf_of != "alice@example.com"
        reason: agents act for alice only
`, 1)
	s = strings.Replace(s, "tests:\n", "tests:\n"+cases, 1)
	// test_catalogs are relative to the config file.
	dir := t.TempDir()
	cat, err := os.ReadFile("../deploy/demo.catalog.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "demo.catalog.json"), cat, 0o644))
	f := filepath.Join(dir, "gatehouse.yaml")
	require.NoError(t, os.WriteFile(f, []byte(s), 0o644))
	return f
}

// `policy test` decides a statement as a tool call of an AI agent: request.agent (tool,
// client, version) and identity.kind / on_behalf_of, from flags and from test cases.
func TestPolicyTestAgentInputs(t *testing.T) {
	f := agentPolicies(t, `  - {name: evil agent query, as: bot, kind: agent, on_behalf_of: alice@example.com, groups: [orders-readers], resource: demo, sql: "select id from orders", agent: {tool: query, client: evil-agent, client_version: "1.0"}, expect: deny, rule: no-evil-agent}
  - {name: good agent query, as: bot, kind: agent, on_behalf_of: alice@example.com, groups: [orders-readers], resource: demo, sql: "select id from orders", agent: {tool: query, client: claude-code}, expect: mask}
  - {name: evil agent describes, as: bot, kind: agent, on_behalf_of: alice@example.com, groups: [orders-readers], resource: demo, sql: "select id from orders", agent: {tool: describe_resource, client: evil-agent}, expect: mask}
  - {name: agent for bob, as: bot, kind: agent, on_behalf_of: bob@example.com, groups: [orders-readers], resource: demo, sql: "select id from orders", agent: {tool: query}, expect: deny, rule: agents-for-alice-only}
`)
	code, out, errOut := run("policy", "test", "-f", f)
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "35 of 35 policy test cases passed")

	flags := func(extra ...string) (int, string, string) {
		return run(append([]string{"policy", "test", "--config", f, "--as", "bot", "--groups", "orders-readers", "--resource", "demo"}, append(extra, "select id from orders")...)...)
	}
	code, out, errOut = flags("--kind", "agent", "--on-behalf-of", "alice@example.com", "--agent-tool", "query", "--agent-client", "evil-agent", "--agent-client-version", "2.1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "DENY by agents/no-evil-agent: this MCP client may not run statements here")
	code, out, _ = flags("--kind", "agent", "--on-behalf-of", "alice@example.com")
	require.Equal(t, 0, code)
	require.Contains(t, out, "MASK by demo-orders/orders-readers-read-orders", "no tool call: request.agent is empty")
	code, out, _ = flags("--kind", "agent", "--on-behalf-of", "bob@example.com")
	require.Equal(t, 0, code)
	require.Contains(t, out, "DENY by agents/agents-for-alice-only")

	// Bad input is named.
	code, _, errOut = flags("--kind", "robot")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--kind "robot": want one of human, service, agent`)
	code, _, errOut = flags("--agent-tool", "list_resources")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--agent-tool "list_resources": want one of query, describe_resource`)
	code, _, errOut = flags("--agent-client", "x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--agent-client and --agent-client-version need --agent-tool")
	bad := agentPolicies(t, `  - {name: bad, as: bot, kind: robot, resource: demo, sql: "select 1", agent: {tool: run}, expect: allow}
`)
	code, _, errOut = run("policy", "test", "-f", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `tests[0].kind: "robot" is not one of human, service, agent`)
	require.Contains(t, errOut, `tests[0].agent.tool: "run" is not one of query, describe_resource`)
}
