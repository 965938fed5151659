package console

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// What an identity provider said is cut on a character boundary.
func TestTruncateKeepsCharactersWhole(t *testing.T) {
	s := strings.Repeat("é", 200) // 2 bytes each
	out := truncate(s, 301)
	require.True(t, utf8.ValidString(out))
	require.Equal(t, strings.Repeat("é", 150)+"…", out)
	require.Equal(t, "short", truncate("short", 300))
}
