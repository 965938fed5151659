package query

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

// While ingest rebuilds the events table (migration 7 takes it offline first), a reader is
// told the store is unavailable and why, not only ClickHouse's "table doesn't exist".
func TestStoreErrorNamesTheMigrationWindow(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	a := &API{log: slog.New(slog.DiscardHandler)}
	httpErr := func(err error) *echo.HTTPError {
		t.Helper()
		var he *echo.HTTPError
		require.True(t, errors.As(a.storeError(err), &he))
		require.Equal(t, http.StatusServiceUnavailable, he.Code)
		return he
	}

	require.NoError(t, conn.Exec(ctx, "RENAME TABLE gh.events TO gh.events_last_wins"))
	_, err := ReadSession(ctx, conn, "gh", "s")
	require.Error(t, err)
	msg := httpErr(err).Message.(string)
	require.Contains(t, msg, "audit store unavailable: ")
	require.Contains(t, msg, "doesn't exist")
	require.Contains(t, msg, "schema migration the events table is offline")
	require.Contains(t, msg, "Upgrading the audit store")

	// Any other failure of the store is reported as it is.
	require.NoError(t, conn.Exec(ctx, "RENAME TABLE gh.events_last_wins TO gh.events"))
	_, err = ReadSession(ctx, conn, "nodb", "s")
	require.Error(t, err)
	require.NotContains(t, httpErr(err).Message.(string), "schema migration")
}
