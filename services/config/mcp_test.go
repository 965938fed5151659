package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// The mcp section: defaults, and every bad value refused with its field.
func TestMCPSection(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	c, err := config.Parse([]byte(valid))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "/mcp", c.MCP.Path)
	require.Equal(t, 60, c.MCP.CallsPerMinute)
	require.Equal(t, 30*time.Second, c.MCP.QueryTimeout)

	for _, tc := range []struct{ edit, want string }{
		{"mcp: {path: mcp}", `mcp.path: "mcp" is not a path of its own`},
		{"mcp: {path: /api/mcp}", `mcp.path: "/api/mcp"`},
		{"mcp: {resource_url: \"ftp://x/mcp\"}", `mcp.resource_url: "ftp://x/mcp" is not an absolute http(s) URL`},
		{"mcp: {calls_per_minute: -1}", "mcp.calls_per_minute: -1 is outside 1..100000"},
		{"mcp: {max_rows: 1000000}", "mcp.max_rows: 1000000 is outside 1..100000"},
		{"mcp: {max_request_bytes: 2048, max_sql_bytes: 4096}", "mcp.max_sql_bytes: 4096 is more than max_request_bytes (2048)"},
		{"mcp: {query_timeout: 1h}", "mcp.query_timeout: 1h0m0s is outside 1s..10m"},
		{"mcp: {max_parked: 1000}", "mcp.max_parked: 1000 is outside 0..100"},
		{"mcp: {parked_results: 1s}", "mcp.parked_results: 1s is outside 1m..24h"},
	} {
		t.Run(tc.edit, func(t *testing.T) {
			c, err := config.Parse([]byte(valid + tc.edit + "\n"))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
