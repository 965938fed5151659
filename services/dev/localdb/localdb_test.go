package localdb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataDirAvoidsClosedParents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands PostgreSQL to the postgres user")
	}
	open, err := os.MkdirTemp("", "gh-datadir-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	closed := filepath.Join(open, "closed")
	if err := os.MkdirAll(filepath.Join(closed, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := DataDir(filepath.Join(open, "pg"))
	if err != nil || got != filepath.Join(open, "pg") {
		t.Fatalf("reachable dir moved: %q %v", got, err)
	}
	got, err = DataDir(filepath.Join(closed, "data", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "/var/tmp/gatehouse-") || filepath.Base(got) != "postgres" {
		t.Fatalf("closed parent not avoided: %q", got)
	}
	again, _ := DataDir(filepath.Join(closed, "data", "postgres"))
	if again != got {
		t.Fatalf("fallback not stable: %q then %q", got, again)
	}
	os.RemoveAll(filepath.Dir(got))
}
