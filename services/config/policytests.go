package config

// PolicyTest is one expected decision.
type PolicyTest struct {
	Name       string           `yaml:"name"`
	As         string           `yaml:"as"`      // the token subject
	AsName     string           `yaml:"as_name"` // identity.name (default: the subject, as for a token without name claims)
	Kind       string           `yaml:"kind"`    // identity.kind: human, service (default) or agent
	OnBehalfOf string           `yaml:"on_behalf_of"`
	Groups     []string         `yaml:"groups"`
	Grants     []string         `yaml:"grants"` // roles the caller holds grants for
	Resource   string           `yaml:"resource"`
	SQL        string           `yaml:"sql"`
	Agent      *PolicyTestAgent `yaml:"agent"`  // the statement comes from a tool call of the MCP server (request.agent)
	Expect     string           `yaml:"expect"` // allow, mask, require_approval or deny
	Rule       string           `yaml:"rule"`   // optional: the rule that must decide
}

// PolicyTestAgent is request.agent of a test case: the MCP tool and client.
type PolicyTestAgent struct {
	Tool          string `yaml:"tool"` // query or describe_resource
	Client        string `yaml:"client"`
	ClientVersion string `yaml:"client_version"`
}

// IdentityKinds are the values of identity.kind.
var IdentityKinds = []string{"human", "service", "agent"}

// AgentTools are the MCP tools whose statements are decided (request.agent.tool).
var AgentTools = []string{"query", "describe_resource"}

func (tc *PolicyTest) validate(path string, ck *checker) {
	ck.required(path+".name", tc.Name)
	ck.required(path+".as", tc.As)
	ck.required(path+".sql", tc.SQL)
	ck.oneOf(path+".expect", tc.Expect, "allow", "mask", "require_approval", "deny")
	if tc.Kind != "" {
		ck.oneOf(path+".kind", tc.Kind, IdentityKinds...)
	}
	if tc.Agent != nil {
		ck.oneOf(path+".agent.tool", tc.Agent.Tool, AgentTools...)
	}
	if !ck.resources[tc.Resource] {
		ck.add(path+".resource", "unknown resource %q", tc.Resource)
	}
}
