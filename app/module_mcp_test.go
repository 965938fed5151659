package app

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The MCP server reaches the PostgreSQL proxy of its process over loopback only.
func TestMCPReachesTheProxyOverLoopback(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:6432": "127.0.0.1:6432",
		"0.0.0.0:6432":   "127.0.0.1:6432",
		"[::]:6432":      "[::1]:6432",
		"[::1]:6432":     "[::1]:6432",
	} {
		got, err := loopback(addr)
		require.NoError(t, err, addr)
		require.Equal(t, want, got)
	}
	for _, addr := range []string{"", "10.0.0.5:6432", "db.example.com:6432"} {
		_, err := loopback(addr)
		require.Error(t, err, addr)
	}
}
