package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// inspectorVersion is the MCP Inspector `make inspector-fixture` installs from npm.
const inspectorVersion = "0.17.2"

// inspector is the MCP Inspector's command (from `make inspector-fixture`, in
// GATEHOUSE_CACHE/inspector, default ~/.cache/gatehouse/inspector).
func inspector(t *testing.T) string {
	root := os.Getenv("GATEHOUSE_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		require.NoError(t, err)
		root = filepath.Join(home, ".cache", "gatehouse")
	}
	bin := filepath.Join(root, "inspector", "node_modules", ".bin", "mcp-inspector")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no MCP Inspector at %s: run make inspector-fixture (npm install of @modelcontextprotocol/inspector@%s)", bin, inspectorVersion)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node for the MCP Inspector")
	}
	return bin
}

// TestMCPInspector: the MCP Inspector's command-line mode, from npm, lists the tools and
// runs a query over streamable HTTP with a bearer token, and through `gatehouse mcp` over
// stdio.
func TestMCPInspector(t *testing.T) {
	bin := inspector(t)
	g := startMCPGateway(t, nil)
	agent := g.mint(t, url.Values{"sub": {"agent-inspector"}, "groups": {"orders-readers"}, "kind": {"agent"}})
	run := func(args ...string) map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "GATEHOUSE_TOKEN="+agent)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		require.NoError(t, cmd.Run(), "%s\n%s", out.String(), errOut.String())
		var v map[string]any
		require.NoError(t, json.Unmarshal(out.Bytes(), &v), out.String())
		return v
	}
	httpArgs := []string{"--cli", g.endpoint, "--transport", "http", "--header", "Authorization: Bearer " + agent}
	tools := run(append(httpArgs, "--method", "tools/list")...)
	require.Len(t, tools["tools"], 4)
	res := run(append(httpArgs, "--method", "tools/call", "--tool-name", "query", "--tool-arg", "resource=demo",
		"--tool-arg", "sql=select card_number from customers order by id limit 1")...)
	sc, _ := res["structuredContent"].(map[string]any)
	require.Equal(t, "ok", sc["status"], res)
	row := sc["rows"].([]any)[0].([]any)
	require.Regexp(t, `^\*+\d{4}$`, row[0])

	// Over stdio, through the gatehouse binary (its token from the environment).
	stdio := run("--cli", binary, "mcp", "--url", g.base, "--method", "tools/call", "--tool-name", "query",
		"--tool-arg", "resource=demo", "--tool-arg", "sql=delete from orders")
	require.Equal(t, true, stdio["isError"], stdio)
	sc, _ = stdio["structuredContent"].(map[string]any)
	require.Equal(t, "denied", sc["status"], stdio)
}
