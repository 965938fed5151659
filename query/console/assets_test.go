package console_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The pages load nothing from anywhere else: no script, style sheet, image, font or module
// from another origin in the embedded assets (the CSP would refuse them anyway; this says
// so before a browser does).
func TestAssetsLoadNothingFromElsewhere(t *testing.T) {
	remote := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|import\s*(\(|[^;]*from)\s*["'](https?:)?//|@import\s+["']?(https?:)?//`)
	n := 0
	require.NoError(t, filepath.WalkDir("web", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		if m := remote.Find(b); m != nil {
			t.Errorf("%s loads from another origin: %q", path, m)
		}
		n++
		return nil
	}))
	require.Greater(t, n, 10)
}

// The vendored packages are the versions the lockfile pins (make console-assets copies
// them from npm ci; the build itself needs no npm).
func TestVendoredAssetsMatchTheLockfile(t *testing.T) {
	b, err := os.ReadFile("ui/package-lock.json")
	require.NoError(t, err)
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	require.NoError(t, json.Unmarshal(b, &lock))
	for _, p := range []string{"node_modules/asciinema-player", "node_modules/axe-core"} {
		require.NotEmpty(t, lock.Packages[p].Version, p)
		require.True(t, strings.HasPrefix(lock.Packages[p].Integrity, "sha512-"), "%s is not pinned by hash", p)
	}
	axe, err := os.ReadFile("testdata/axe.min.js")
	require.NoError(t, err)
	require.Contains(t, string(axe[:64]), "axe v"+lock.Packages["node_modules/axe-core"].Version)
	player, err := os.ReadFile("web/vendor/asciinema-player.min.js")
	require.NoError(t, err)
	require.Contains(t, string(player[:300]), "AsciinemaPlayer")
	pkg, err := os.ReadFile("ui/package.json")
	require.NoError(t, err)
	require.Contains(t, string(pkg), `"asciinema-player": "`+lock.Packages["node_modules/asciinema-player"].Version+`"`, "package.json and the lockfile disagree")
}
