package identity

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A token says what calls: a service, a person, or an AI agent (the MCP server's callers);
// any other value is not taken from it.
func TestKindFromClaims(t *testing.T) {
	for _, tc := range []struct {
		claims map[string]any
		claim  string
		want   string
	}{
		{map[string]any{"gh_kind": "agent"}, "", "agent"},
		{map[string]any{"agent_kind": "agent"}, "agent_kind", "agent"},
		{map[string]any{"gh_kind": "human"}, "", "human"},
		{map[string]any{"gh_kind": "admin", "email": "a@example.com"}, "", "human"},
		{map[string]any{"gh_kind": "root"}, "", "service"},
		{map[string]any{}, "", "service"},
	} {
		require.Equal(t, tc.want, kind(tc.claims, tc.claim), "%v", tc.claims)
	}
}
