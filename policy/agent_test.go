package policy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// request.agent is the MCP tool call a request belongs to: rules read the tool and the MCP
// client's name and version; a request that is not an agent's sees "" everywhere, on every
// protocol, so that a rule reading them neither fails nor matches there.
func TestAgentInputs(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"*"}, Rules: []config.Rule{
		{Name: "all", Effect: "allow", When: "true"},
		{Name: "evil", Effect: "deny", When: `request.agent.tool == "query" && request.agent.client.name == "evil-agent"`, Reason: "not this client"},
		{Name: "old-client", Effect: "deny", When: `request.agent.client.name == "inspector" && request.agent.client.version == "0.1"`, Reason: "too old"},
		{Name: "not-an-agent", Effect: "deny", When: `identity.kind == "agent" && request.agent.tool == ""`, Reason: "agents only through MCP"},
	}}}, 1)
	require.NoError(t, err)
	sql := func(kind string, a *schemas.AgentRequest) schemas.DecisionReply {
		return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Kind: kind},
			Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: "select 1"}, Agent: a}, Catalog: testCatalog}, time.Now())
	}
	for _, tc := range []struct {
		name  string
		kind  string
		agent *schemas.AgentRequest
		rule  string
	}{
		{"evil client's query", "agent", &schemas.AgentRequest{Tool: "query", ClientName: "evil-agent", ClientVersion: "1.0"}, "evil"},
		{"another client's query", "agent", &schemas.AgentRequest{Tool: "query", ClientName: "good-agent", ClientVersion: "1.0"}, "all"},
		{"evil client, another tool", "agent", &schemas.AgentRequest{Tool: "describe_resource", ClientName: "evil-agent"}, "all"},
		{"the version", "agent", &schemas.AgentRequest{Tool: "query", ClientName: "inspector", ClientVersion: "0.1"}, "old-client"},
		{"an agent's token without the MCP server", "agent", nil, "not-an-agent"},
		{"a person", "human", nil, "all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sql(tc.kind, tc.agent)
			require.Equal(t, tc.rule, d.Rule, d.Reason)
		})
	}
	// The other protocols have request.agent too: the rules evaluate (no "could not be
	// evaluated" denial).
	d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Kind: "human"},
		Resource: schemas.Resource{Name: "web-1", Type: "ssh"}, SSH: &schemas.SSHRequest{Login: "deploy", Channel: "session", Request: "exec", Command: "ls"}}}, time.Now())
	require.Equal(t, "allow", d.Effect, d.Reason)
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Kind: "human"},
		Resource: schemas.Resource{Name: "api", Type: "http"}, HTTP: &schemas.HTTPRequest{Method: "GET", Path: "/"}}}, time.Now())
	require.Equal(t, "allow", d.Effect, d.Reason)
}
