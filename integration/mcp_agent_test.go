package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/proxy/session/sessiontest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// connectAs is the official SDK's client saying it is name/version in initialize.
func (g *mcpGateway) connectAs(t *testing.T, token, name, version string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: name, Version: version}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.endpoint,
		HTTPClient: &http.Client{Transport: &bearer{token, http.DefaultTransport}}, DisableStandaloneSSE: true}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// TestMCPAgentInputs: rules see the tool and the MCP client of an agent's statement
// (request.agent), through the real path — the MCP server's connection to the PostgreSQL
// proxy brings a one-time ticket of this process — and session.start records them. Two
// clients with the same token: the one a rule names is denied, the other is not (after
// the other's allow is in the decision cache). On a direct connection, a forged,
// replayed, expired or another identity's ticket refuses the connection.
func TestMCPAgentInputs(t *testing.T) {
	g := startMCPGateway(t, func(c *config.Config) {
		c.Policies = append(c.Policies, config.Policy{Name: "agents", Resources: []string{"demo"}, Rules: []config.Rule{{
			Name: "no-evil-agent", Effect: "deny", Reason: "this MCP client may not query",
			When: `request.agent.tool == "query" && request.agent.client.name == "evil-agent"`,
		}, {
			Name: "agents-read-settings", Effect: "allow",
			When: `request.agent.tool == "query" && request.sql.tables.size() == 0 && request.sql.read_only`,
		}}})
	})
	token := g.mint(t, url.Values{"sub": {"agent-reports"}, "groups": {"orders-readers"}, "kind": {"agent"}, "on_behalf_of": {"alice@example.com"}})
	good := g.connectAs(t, token, "good-agent", "2.1")
	evil := g.connectAs(t, token, "evil-agent", "6.6.6")
	const q = "select id from orders order by id limit 1"

	res, out := call(t, good, "query", map[string]any{"resource": "demo", "sql": q})
	require.False(t, res.IsError, text(res))
	require.Equal(t, "ok", out.Status, out.Message)
	res, out = call(t, evil, "query", map[string]any{"resource": "demo", "sql": q})
	require.True(t, res.IsError)
	require.Equal(t, "denied", out.Status)
	require.Contains(t, out.Message, "this MCP client may not query")
	res, out = call(t, good, "query", map[string]any{"resource": "demo", "sql": q})
	require.Equal(t, "ok", out.Status, out.Message)
	// The ticket is the gateway's: PostgreSQL never sees it.
	res, out = call(t, good, "query", map[string]any{"resource": "demo", "sql": "select current_setting('gatehouse.agent_ticket', true) is null as absent"})
	require.Equal(t, "ok", out.Status, out.Message)
	require.Equal(t, "t", *out.Rows[0][0])

	// The trail: the PostgreSQL proxy's sessions of the calls say the tool and the client.
	ctx := context.Background()
	b, err := bus.Connect(ctx, g.a.NATSURL(), "mcp-agent-test", bus.Options{}, testLogger(t))
	require.NoError(t, err)
	defer b.Close()
	clients := func(evs []schemas.Event) map[string]int {
		n := map[string]int{}
		for _, st := range sessiontest.OfType[schemas.SessionStart](t, evs, schemas.TypeSessionStart) {
			if st.AgentTool != "" {
				require.Equal(t, "query", st.AgentTool)
				require.NotEmpty(t, st.McpSession)
				require.NotZero(t, st.McpCall)
				n[st.AgentClientName+"/"+st.AgentClientVersion]++
			}
		}
		return n
	}
	evs := sessiontest.Events(t, b, "demo", func(evs []schemas.Event) bool { return len(clients(evs)) == 2 })
	require.Equal(t, map[string]int{"good-agent/2.1": 3, "evil-agent/6.6.6": 1}, clients(evs))

	// Direct connections with a ticket: each is tried once, must be this process's,
	// unexpired, and the token's identity's.
	host, port, err := net.SplitHostPort(g.a.ListenAddr("postgres"))
	require.NoError(t, err)
	agents := g.a.AgentCalls()
	issue := func(sub string, ttl time.Duration) string {
		tk, err := agents.Issue(session.AgentCall{Issuer: identityIssuer(t, g, token), Subject: sub,
			Agent: schemas.AgentRequest{Tool: "query", ClientName: "good-agent"}}, ttl)
		require.NoError(t, err)
		return tk
	}
	connect := func(ticket string) error {
		cfg, err := pgconn.ParseConfig("host=" + host + " port=" + port + " dbname=demo user=x sslmode=disable")
		require.NoError(t, err)
		cfg.Password = token
		cfg.RuntimeParams = map[string]string{session.AgentTicketParam: ticket}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		c, err := pgconn.ConnectConfig(cctx, cfg)
		if err == nil {
			_ = c.Close(cctx)
		}
		return err
	}
	valid := issue("agent-reports", time.Minute)
	require.NoError(t, connect(valid), "a valid ticket")
	err = connect(valid)
	require.ErrorContains(t, err, "agent ticket refused: agent ticket unknown or already used", "a replayed ticket")
	require.ErrorContains(t, connect("00"+valid[2:]), "agent ticket unknown", "a forged ticket")
	require.ErrorContains(t, connect(issue("agent-reports", -time.Second)), "agent ticket expired")
	require.ErrorContains(t, connect(issue("agent-other", time.Minute)), "another identity")
}

// identityIssuer is the issuer of token (its iss claim).
func identityIssuer(t *testing.T, _ *mcpGateway, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims struct {
		Iss string `json:"iss"`
	}
	require.NoError(t, json.Unmarshal(b, &claims))
	return claims.Iss
}
