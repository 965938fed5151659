package ingest

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// MigrateTo applies the migrations up to version n (tests of upgrades).
var MigrateTo = migrate

// Scheduled is one scheduled run (claimed among replicas).
func (r *Retention) Scheduled(ctx context.Context, now time.Time, who schemas.Identity) (bool, error) {
	return r.scheduled(ctx, now, who)
}
