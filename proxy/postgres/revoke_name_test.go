package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
)

// An administrator revokes a person by the name they know (an email), not by the IdP's
// opaque subject: the live session ends and new ones are refused, and the messages and the
// trail name the people involved.
func TestRevocationByName(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const sub = "CgVhbGljZRIFbG9jYWw" // Dex's subject for alice
	tok := env.mint(identity.TokenRequest{Subject: sub, Name: "alice@example.com", Groups: []string{"app"}})
	connect := func() (*pgconn.PgConn, error) {
		return pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=app user=x password=%s sslmode=disable", env.host, env.port, tok))
	}
	c, err := connect()
	require.NoError(t, err)
	_, err = c.Exec(ctx, "select 1").ReadAll()
	require.NoError(t, err)

	rv := schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "alice@example.com", Reason: "left the company", By: "CgVib2IxEgVsb2NhbA", ByName: "bob@example.com", At: time.Now()}
	require.NoError(t, bus.PublishRevocation(ctx, env.bus.JS, rv, schemas.Identity{Subject: rv.By, Name: rv.ByName}))
	var pgErr *pgconn.PgError
	var ended error
	require.Eventually(t, func() bool {
		_, ended = c.Exec(ctx, "select 1").ReadAll()
		return ended != nil
	}, 10*time.Second, 20*time.Millisecond, "the session of alice@example.com was not ended")
	c.Close(ctx)
	require.ErrorAs(t, ended, &pgErr)
	require.Equal(t, "57P01", pgErr.Code)
	require.Equal(t, "terminating connection: access revoked by bob@example.com: left the company", pgErr.Message)

	_, err = connect()
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "28000", pgErr.Code)
	require.Contains(t, pgErr.Message, "access revoked for alice@example.com by bob@example.com")

	var started, terminated bool
	for _, line := range bytes.Split(readAll(t, env.bus, "app"), []byte{'\n'}) {
		var e schemas.Event
		require.NoError(t, json.Unmarshal(line, &e))
		if e.Identity.Subject != sub {
			continue
		}
		require.Equal(t, "alice@example.com", e.Identity.Name, "every event of the session names the caller")
		switch e.Type {
		case schemas.TypeSessionStart:
			started = true
		case schemas.TypeSessionTerminated:
			var p schemas.SessionTerminated
			require.NoError(t, e.Decode(&p))
			require.Equal(t, "identity:alice@example.com", p.Revocation)
			terminated = true
		}
	}
	require.True(t, started)
	require.True(t, terminated)

	// Lifted by name, alice may connect again.
	require.NoError(t, bus.PublishRevocation(ctx, env.bus.JS, schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "alice@example.com", Reason: "rehired", By: rv.By, At: time.Now(), Lifted: true}, schemas.Identity{Subject: rv.By}))
	require.Eventually(t, func() bool {
		c, err := connect()
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}
