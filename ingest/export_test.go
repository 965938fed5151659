package ingest

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// MigrateTo applies the migrations up to version n (tests of upgrades).
var MigrateTo = migrate

// MigrateClusterTo applies the cluster migrations up to version n.
var MigrateClusterTo = migrateCluster

// EventColumnsV1 is the column list of an events table before migration 6.
const EventColumnsV1 = eventColumnsV1

// Scheduled is one scheduled run (claimed among replicas).
func (r *Retention) Scheduled(ctx context.Context, now time.Time, who schemas.Identity) (bool, error) {
	return r.scheduled(ctx, now, who)
}
