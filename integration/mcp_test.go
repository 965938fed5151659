package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/proxy/session/sessiontest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// mcpGateway is the gateway the MCP tests run: the demo database and config, and the
// targets the MCP server needs (the PostgreSQL proxy, policy, approvals), in this
// process, without ClickHouse.
type mcpGateway struct {
	a        *app.App
	base     string
	endpoint string
}

func startMCPGateway(t *testing.T, tune func(*config.Config)) *mcpGateway {
	pg, pwFile := demoPostgres(t)
	t.Setenv("GATEHOUSE_DATA_DIR", t.TempDir())
	t.Setenv("GATEHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_PG_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_DEMO_PG_ADDR", pg.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_PASSWORD_FILE", pwFile)
	cfg, err := config.Load("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfg.Audit.Mode = "strict"
	for i := range cfg.Resources {
		cfg.Resources[i].Audit = "strict"
	}
	if tune != nil {
		tune(cfg)
	}
	require.NoError(t, cfg.Validate())
	a := runApp(t, cfg, "dev-issuer", "policy", "approvals", "mcp")
	base := "http://" + a.HTTPAddr()
	return &mcpGateway{a: a, base: base, endpoint: base + cfg.MCP.Path}
}

// mint asks the dev issuer for a token (form: sub, groups, kind, on_behalf_of, aud).
func (g *mcpGateway) mint(t *testing.T, form url.Values) string {
	t.Helper()
	resp, err := http.PostForm(g.base+"/dev/oidc/token", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	require.Equal(t, 200, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.AccessToken
}

// bearer adds a token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// connect is the official SDK's client, over streamable HTTP, with token.
func (g *mcpGateway) connect(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "gatehouse-test-agent", Version: "1.0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.endpoint,
		HTTPClient: &http.Client{Transport: &bearer{token, http.DefaultTransport}}, DisableStandaloneSSE: true}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// callResult is a tool's structured result.
type callResult struct {
	Status     string      `json:"status"`
	Message    string      `json:"message"`
	SQLState   string      `json:"sqlstate"`
	ApprovalID string      `json:"approval_id"`
	Columns    []string    `json:"columns"`
	Rows       [][]*string `json:"rows"`
	Truncated  bool        `json:"truncated"`
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (*mcp.CallToolResult, callResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	require.NoError(t, err)
	var out callResult
	if res.StructuredContent != nil {
		b, err := json.Marshal(res.StructuredContent)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &out))
	}
	return res, out
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestMCPServer drives the MCP server with the official Go SDK's client: tools listed; a
// query allowed and masked; one denied with its reason; one held for approval returning
// the approval id at once, and approval_status delivering its result once a person
// approved it; every call recorded with the agent and the person it acts for.
func TestMCPServer(t *testing.T) {
	g := startMCPGateway(t, nil)
	agent := g.mint(t, url.Values{"sub": {"agent-reports"}, "groups": {"orders-readers"}, "kind": {"agent"}, "on_behalf_of": {"alice@example.com"}})
	cs := g.connect(t, agent)
	ctx := context.Background()

	tools, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	require.ElementsMatch(t, []string{"list_resources", "describe_resource", "query", "approval_status"}, names)

	res, _ := call(t, cs, "list_resources", nil)
	require.False(t, res.IsError, text(res))
	require.Contains(t, string(mustJSON(t, res.StructuredContent)), `"name":"demo"`)

	// Allowed, and masked by lineage in the proxy: the card number partial, the email a
	// token.
	res, out := call(t, cs, "query", map[string]any{"resource": "demo", "sql": "select id, email, card_number from customers order by id limit 2"})
	require.False(t, res.IsError, text(res))
	require.Equal(t, "ok", out.Status)
	require.Equal(t, []string{"id", "email", "card_number"}, out.Columns)
	require.Len(t, out.Rows, 2)
	for _, row := range out.Rows {
		require.NotContains(t, *row[1], "@", "the email is masked")
		require.Regexp(t, `^\*+\d{4}$`, *row[2], "the card number is masked but its last four")
	}

	// The schema as far as policy lets the caller see it: masked columns marked; an agent
	// that may read nothing sees no relation.
	res, _ = call(t, cs, "describe_resource", map[string]any{"resource": "demo"})
	require.False(t, res.IsError, text(res))
	var desc struct {
		Relations []struct {
			Schema, Name string
			Columns      []struct{ Name, Masked string }
		}
	}
	require.NoError(t, json.Unmarshal(mustJSON(t, res.StructuredContent), &desc))
	masked := map[string]string{}
	var rels []string
	for _, r := range desc.Relations {
		rels = append(rels, r.Schema+"."+r.Name)
		for _, c := range r.Columns {
			masked[r.Name+"."+c.Name] = c.Masked
		}
	}
	require.ElementsMatch(t, []string{"public.customers", "public.orders"}, rels)
	require.Equal(t, "partial", masked["customers.card_number"])
	require.Equal(t, "hmac", masked["customers.email"])
	require.Equal(t, "", masked["customers.name"])
	nobody := g.connect(t, g.mint(t, url.Values{"sub": {"agent-nobody"}, "kind": {"agent"}}))
	res, _ = call(t, nobody, "describe_resource", map[string]any{"resource": "demo"})
	require.False(t, res.IsError, text(res))
	require.NotContains(t, string(mustJSON(t, res.StructuredContent)), "customers")

	// Denied, with the rule's reason.
	res, out = call(t, cs, "query", map[string]any{"resource": "demo", "sql": "delete from orders"})
	require.True(t, res.IsError)
	require.Equal(t, "denied", out.Status)
	require.Equal(t, "42501", out.SQLState)
	require.Contains(t, out.Message, "Gatehouse denied the statement")

	// Refused before anything runs: an unknown resource, an oversized statement.
	_, out = call(t, cs, "query", map[string]any{"resource": "nope", "sql": "select 1"})
	require.Equal(t, "refused", out.Status)
	_, out = call(t, cs, "query", map[string]any{"resource": "demo", "sql": "select '" + strings.Repeat("x", 20000) + "'"})
	require.Equal(t, "refused", out.Status)
	require.Contains(t, out.Message, "mcp.max_sql_bytes")

	// Held for approval: the id at once; approval_status says pending, then — once a
	// person approved — the result.
	dba := g.mint(t, url.Values{"sub": {"agent-dba"}, "groups": {"dba"}, "kind": {"agent"}, "on_behalf_of": {"bob@example.com"}})
	dcs := g.connect(t, dba)
	start := time.Now()
	res, out = call(t, dcs, "query", map[string]any{"resource": "demo", "sql": "update customers set name = 'Ada (via agent)' where id = 1 returning name"})
	require.False(t, res.IsError, text(res))
	require.Equal(t, "pending_approval", out.Status, out.Message)
	require.NotEmpty(t, out.ApprovalID)
	require.Less(t, time.Since(start), 20*time.Second, "the tool returns at once, not when approved")
	id := out.ApprovalID
	_, st := call(t, dcs, "approval_status", map[string]any{"approval_id": id})
	require.Equal(t, "pending_approval", st.Status)
	// Another agent cannot read it.
	_, other := call(t, cs, "approval_status", map[string]any{"approval_id": id})
	require.Equal(t, "refused", other.Status)

	approver := g.mint(t, url.Values{"sub": {"approver-1"}, "groups": {"approvers"}, "kind": {"human"}})
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"approvals", "approve", id, "--reason", "agent change", "--url", g.base, "--token", approver}, &stdout, &stderr), stderr.String())
	require.Eventually(t, func() bool {
		_, st = call(t, dcs, "approval_status", map[string]any{"approval_id": id})
		return st.Status != "pending_approval"
	}, 30*time.Second, 200*time.Millisecond)
	require.Equal(t, "ok", st.Status, st.Message)
	require.Equal(t, []string{"name"}, st.Columns)
	require.Equal(t, "Ada (via agent)", *st.Rows[0][0])

	// The trail: the MCP session's calls and results (identity kind agent, acting for
	// alice), and the PostgreSQL proxy's session of the query, named after the call.
	b, err := bus.Connect(ctx, g.a.NATSURL(), "mcp-test", bus.Options{}, testLogger(t))
	require.NoError(t, err)
	defer b.Close()
	evs := sessiontest.Events(t, b, "_mcp", func(evs []schemas.Event) bool {
		return len(sessiontest.OfType[schemas.McpResult](t, evs, schemas.TypeMcpResult)) >= 10
	})
	var sawMasked, sawDenied, sawHeld bool
	for _, ev := range evs {
		if ev.Type != schemas.TypeMcpResult && ev.Type != schemas.TypeMcpCall {
			continue
		}
		require.Equal(t, "agent", ev.Identity.Kind)
		if ev.Identity.Subject == "agent-reports" {
			require.Equal(t, "alice@example.com", ev.Identity.OnBehalfOf)
		}
		if ev.Type != schemas.TypeMcpResult {
			continue
		}
		var r schemas.McpResult
		require.NoError(t, json.Unmarshal(ev.Payload, &r))
		require.NotContains(t, r.Result, "@example", "no clear email in the recorded result")
		switch r.Status {
		case "ok":
			if r.Rows == 2 {
				sawMasked = true
				require.True(t, strings.HasPrefix(r.ApplicationName, "gatehouse-mcp/"))
			}
		case "denied":
			sawDenied = true
			require.Equal(t, "deny", r.Decision)
		case "pending_approval":
			if r.ApplicationName != "" {
				sawHeld = true
				require.Equal(t, id, r.ApprovalID)
			}
		}
	}
	require.True(t, sawMasked && sawDenied && sawHeld, "masked %v denied %v held %v", sawMasked, sawDenied, sawHeld)
	pgEvs := sessiontest.Events(t, b, "demo", func(evs []schemas.Event) bool {
		return sessiontest.HasType(evs, schemas.TypeSessionStart, func(p json.RawMessage) bool {
			return strings.Contains(string(p), "gatehouse-mcp/")
		})
	})
	for _, ev := range pgEvs {
		if ev.Type == schemas.TypeSessionStart && ev.Identity.Subject == "agent-reports" {
			require.Equal(t, "agent", ev.Identity.Kind)
			require.Equal(t, "alice@example.com", ev.Identity.OnBehalfOf)
		}
	}
}

// TestMCPAuth: the endpoint wants a token for this gateway. Without one, or with one for
// another audience, 401 with WWW-Authenticate naming the protected-resource metadata,
// which names the endpoint and the issuers; malformed JSON-RPC and oversized bodies are
// refused.
func TestMCPAuth(t *testing.T) {
	g := startMCPGateway(t, func(c *config.Config) { c.MCP.MaxRequestBytes = 8 << 10; c.MCP.MaxSQLBytes = 4 << 10 })
	post := func(token, body string) (*http.Response, string) {
		req, err := http.NewRequest("POST", g.endpoint, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`

	resp, _ := post("", initialize)
	require.Equal(t, 401, resp.StatusCode)
	wa := resp.Header.Get("WWW-Authenticate")
	require.Contains(t, wa, `resource_metadata="`+g.base+"/.well-known/oauth-protected-resource/mcp"+`"`)

	other := g.mint(t, url.Values{"sub": {"agent-x"}, "kind": {"agent"}, "aud": {"another-service"}})
	resp, body := post(other, initialize)
	require.Equal(t, 401, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "resource_metadata=")
	require.Contains(t, body, `token audience "another-service"`)
	require.NotContains(t, body, other)

	mresp, err := http.Get(g.base + "/.well-known/oauth-protected-resource/mcp")
	require.NoError(t, err)
	var meta struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	require.NoError(t, json.NewDecoder(mresp.Body).Decode(&meta))
	mresp.Body.Close()
	require.Equal(t, g.endpoint, meta.Resource)
	require.Contains(t, meta.AuthorizationServers, g.a.DevIssuerURL())

	agent := g.mint(t, url.Values{"sub": {"agent-y"}, "groups": {"orders-readers"}, "kind": {"agent"}})
	resp, body = post(agent, `{"jsonrpc":"2.0","id":1,"method":`)
	require.Equal(t, 400, resp.StatusCode, body)
	resp, body = post(agent, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":"`+strings.Repeat("a", 10<<10)+`"}}`)
	require.Equal(t, 413, resp.StatusCode, body)
	resp, _ = post(agent, initialize)
	require.Equal(t, 200, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(t, sid)

	// Another agent's valid token cannot use this agent's MCP session.
	thief := g.mint(t, url.Values{"sub": {"agent-z"}, "groups": {"orders-readers"}, "kind": {"agent"}})
	req0, err := http.NewRequest("POST", g.endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`))
	require.NoError(t, err)
	req0.Header.Set("Content-Type", "application/json")
	req0.Header.Set("Accept", "application/json, text/event-stream")
	req0.Header.Set("Mcp-Session-Id", sid)
	req0.Header.Set("Authorization", "Bearer "+thief)
	tresp, err := http.DefaultClient.Do(req0)
	require.NoError(t, err)
	tresp.Body.Close()
	require.Contains(t, []int{403, 404}, tresp.StatusCode, "another identity's session")

	// A tool call without a session (protocol 2026-07-28, sessionless) is not served: every
	// call is made in an MCP session, one trail tied to one identity.
	req, err := http.NewRequest("POST", g.endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_resources","arguments":{}}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Authorization", "Bearer "+agent)
	sresp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	sbody, _ := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	t.Logf("sessionless call: %d %s", sresp.StatusCode, sbody)
	require.NotContains(t, string(sbody), `"resources"`)
}

// TestMCPLimits: calls per minute and rows per hour hold per agent.
func TestMCPLimits(t *testing.T) {
	g := startMCPGateway(t, func(c *config.Config) {
		c.MCP.CallsPerMinute, c.MCP.RowsPerHour, c.MCP.MaxRows, c.MCP.SessionsPerMinute = 5, 3, 2, 2
	})
	agent := g.mint(t, url.Values{"sub": {"agent-busy"}, "groups": {"orders-readers"}, "kind": {"agent"}})
	cs := g.connect(t, agent)

	_, out := call(t, cs, "query", map[string]any{"resource": "demo", "sql": "select id from orders order by id"})
	require.Equal(t, "limited", out.Status, "max_rows cuts the result")
	require.Len(t, out.Rows, 2)
	require.True(t, out.Truncated)
	_, out = call(t, cs, "query", map[string]any{"resource": "demo", "sql": "select id from orders order by id"})
	require.Len(t, out.Rows, 1, "one row left of the 3 an hour")
	require.Contains(t, out.Message, "mcp.rows_per_hour")
	_, out = call(t, cs, "query", map[string]any{"resource": "demo", "sql": "select id from orders order by id"})
	require.Equal(t, "refused", out.Status)
	require.Contains(t, out.Message, "mcp.rows_per_hour")

	// Five calls a minute: the fourth and fifth pass, the sixth is refused.
	call(t, cs, "list_resources", nil)
	call(t, cs, "list_resources", nil)
	res, _ := call(t, cs, "list_resources", nil)
	require.True(t, res.IsError)
	require.Contains(t, text(res), "mcp.calls_per_minute")

	// Two new MCP sessions a minute: the second opens, the third is refused (429).
	g.connect(t, agent)
	c := mcp.NewClient(&mcp.Implementation{Name: "again", Version: "1"}, nil)
	_, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: g.endpoint,
		HTTPClient: &http.Client{Transport: &bearer{agent, http.DefaultTransport}}, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "Too Many Requests")

	// Another agent has its own budget.
	cs2 := g.connect(t, g.mint(t, url.Values{"sub": {"agent-calm"}, "groups": {"orders-readers"}, "kind": {"agent"}}))
	res, _ = call(t, cs2, "list_resources", nil)
	require.False(t, res.IsError, text(res))
}

// TestMCPStdio: `gatehouse mcp` bridges stdio to the gateway, driven by the official SDK's
// client over its command transport: tools listed, a masked query, a denial, a malformed
// line answered with a parse error, a bad token's 401 told as a JSON-RPC error.
func TestMCPStdio(t *testing.T) {
	g := startMCPGateway(t, nil)
	agent := g.mint(t, url.Values{"sub": {"agent-laptop"}, "groups": {"orders-readers"}, "kind": {"agent"}, "on_behalf_of": {"carol@example.com"}})
	cmd := exec.Command(binary, "mcp", "--url", g.base)
	cmd.Env = append(os.Environ(), "GATEHOUSE_TOKEN="+agent)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-agent", Version: "0.1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	require.NoError(t, err, stderr.String())
	tools, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	require.Len(t, tools.Tools, 4)
	res, out := call(t, cs, "query", map[string]any{"resource": "demo", "sql": "select card_number from customers order by id limit 1"})
	require.False(t, res.IsError, text(res))
	require.Regexp(t, `^\*+\d{4}$`, *out.Rows[0][0])
	res, out = call(t, cs, "query", map[string]any{"resource": "demo", "sql": "drop table orders"})
	require.True(t, res.IsError)
	require.Equal(t, "denied", out.Status)
	require.NoError(t, cs.Close())
	require.NotContains(t, stderr.String(), agent, "the token is never printed")

	// Raw lines: a malformed one gets a parse error; a token for another audience gets
	// the gateway's 401 as a JSON-RPC error, naming the check.
	other := g.mint(t, url.Values{"sub": {"agent-x"}, "kind": {"agent"}, "aud": {"another-service"}})
	raw := exec.Command(binary, "mcp", "--url", g.base)
	raw.Env = append(os.Environ(), "GATEHOUSE_TOKEN="+other)
	raw.Stdin = strings.NewReader("{not json\n" + `{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}` + "\n")
	var rawOut, rawErr bytes.Buffer
	raw.Stdout, raw.Stderr = &rawOut, &rawErr
	require.NoError(t, raw.Run(), rawErr.String())
	lines := strings.Split(strings.TrimSpace(rawOut.String()), "\n")
	require.Len(t, lines, 2, rawOut.String())
	require.Contains(t, lines[0], `"code":-32700`)
	require.Contains(t, lines[1], `"id":7`)
	require.Contains(t, lines[1], "401")
	require.Contains(t, lines[1], "another-service")
	require.NotContains(t, rawOut.String()+rawErr.String(), other)
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
