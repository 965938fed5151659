package cli

import (
	"os"
	"testing"
)

// TestMain keeps the tests off the sign-in of whoever runs them: commands without a token
// would otherwise use `gatehouse login`'s cache in their config directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gh-cli-config-")
	if err != nil {
		panic(err)
	}
	os.Setenv("GATEHOUSE_CONFIG_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
