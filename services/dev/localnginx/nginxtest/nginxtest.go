// Package nginxtest starts the nginx fixture (services/dev/localnginx) for a test.
package nginxtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/localnginx"
)

// Start starts nginx for t in t.TempDir() and stops it when t ends. t is skipped, saying
// so, only when nginx is not installed; any other failure fails t.
func Start(t testing.TB, cfg localnginx.Config) *localnginx.Nginx {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := localnginx.Start(ctx, t.TempDir(), cfg)
	if errors.Is(err, localnginx.ErrNotInstalled) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Logf("stop nginx: %v", err)
		}
	})
	return n
}
