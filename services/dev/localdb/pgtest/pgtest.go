// Package pgtest starts a real PostgreSQL server for a test, on a free loopback port in a
// temporary directory, and stops it when the test ends.
package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/localdb"
)

// Start starts PostgreSQL for t.
func Start(t testing.TB) *localdb.Postgres {
	t.Helper()
	// PostgreSQL runs as the postgres user when tests run as root, so the directory must be
	// reachable by it (t.TempDir is 0700).
	dir, err := os.MkdirTemp("", "gh-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := localdb.StartPostgres(ctx, filepath.Join(dir, "data"), 0)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Logf("stop postgres: %v", err)
		}
		os.RemoveAll(dir)
	})
	return pg
}
