// Package chtest starts a real ClickHouse server for a test, on a free loopback port in a
// temporary directory, and stops it when the test ends.
package chtest

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/localdb"
)

// Start starts ClickHouse for t.
func Start(t testing.TB) *localdb.ClickHouse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ch, err := localdb.StartClickHouse(ctx, t.TempDir(), 0)
	if err != nil {
		t.Fatalf("start clickhouse: %v", err)
	}
	t.Cleanup(func() {
		if err := ch.Stop(); err != nil {
			t.Logf("stop clickhouse: %v", err)
		}
	})
	return ch
}
