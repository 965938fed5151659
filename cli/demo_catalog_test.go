package cli

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/catalogs"
	"github.com/gatehouse/gatehouse/services/dev/localdb/pgtest"
)

var update = flag.Bool("update", false, "rewrite deploy/demo.catalog.json from a freshly seeded demo database")

// demoCatalogFile is the demo database's catalog, which the demo's policy tests resolve
// statements against offline (test_catalogs in deploy/gatehouse.dev.yaml).
const demoCatalogFile = "../deploy/demo.catalog.json"

// TestDemoCatalogIsCurrent reads the catalog of a freshly seeded demo database, as the
// proxy does, and holds the shipped file to it: the offline policy tests cannot drift
// from the schema `gatehouse dev` runs. `go test ./cli -run TestDemoCatalogIsCurrent
// -update` rewrites it.
func TestDemoCatalogIsCurrent(t *testing.T) {
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, SeedDemo(ctx, pg, "gatehouse_demo", "demo", pw))
	secret, err := os.ReadFile(pw)
	require.NoError(t, err)
	cfg, err := pgconn.ParseConfig(pg.ConnString("gatehouse_demo", string(secret), "demo"))
	require.NoError(t, err)
	got, err := catalogs.ReadPostgres(ctx, cfg, "demo")
	require.NoError(t, err)
	if *update {
		got.Fetched = time.Time{}
		b, err := json.MarshalIndent(got, "", " ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(demoCatalogFile, append(b, '\n'), 0o644))
	}
	b, err := os.ReadFile(demoCatalogFile)
	require.NoError(t, err)
	var shipped schemas.Catalog
	require.NoError(t, json.Unmarshal(b, &shipped))
	// Object IDs and the server's minor version may differ; what a decision reads may not.
	for _, c := range []*schemas.Catalog{got, &shipped} {
		c.Fetched, c.Version, c.Server = time.Time{}, "", 0
		for i := range c.Relations {
			c.Relations[i].OID = 0
		}
	}
	const fix = "deploy/demo.catalog.json is not the demo database's catalog: run go test ./cli -run TestDemoCatalogIsCurrent -update"
	require.Equal(t, len(shipped.Relations), len(got.Relations), fix)
	for i := range got.Relations {
		require.Equal(t, shipped.Relations[i], got.Relations[i], fix)
	}
	shipped.Relations, got.Relations = nil, nil
	require.Equal(t, shipped, *got, fix)
}
