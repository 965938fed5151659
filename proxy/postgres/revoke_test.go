package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/revoke"
)

// revokeSessions is how many sessions the revocation test holds (GH_REVOKE_SESSIONS to
// measure with more, e.g. 1000).
func revokeSessions() int {
	if n, err := strconv.Atoi(os.Getenv("GH_REVOKE_SESSIONS")); err == nil && n > 0 {
		return n
	}
	return 100
}

func TestRevocationEndsLiveSessionsAndRefusesNewOnes(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	victim := env.mint(identity.TokenRequest{Subject: "svc-victim", Groups: []string{"app"}})
	bystander := env.mint(identity.TokenRequest{Subject: "svc-bystander", Groups: []string{"app"}})
	connAs := func(tok string) (*pgconn.PgConn, error) {
		return pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=app user=x password=%s sslmode=disable", env.host, env.port, tok))
	}

	n := revokeSessions()
	conns := make([]*pgconn.PgConn, n)
	for i := range conns {
		c, err := connAs(victim)
		require.NoError(t, err)
		conns[i] = c
	}
	other, err := connAs(bystander)
	require.NoError(t, err)
	defer other.Close(ctx)
	// One of them is running a statement that would take a minute.
	busy, err := connAs(victim)
	require.NoError(t, err)
	pid := busy.PID()
	busyErr := make(chan error, 1)
	go func() { _, err := busy.Exec(ctx, "select pg_sleep(60)").ReadAll(); busyErr <- err }()
	time.Sleep(200 * time.Millisecond)

	// Every idle client watches its socket: the gateway's FATAL, then the end.
	var wg sync.WaitGroup
	ended := make([]time.Time, n)
	messages := make([][]byte, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := io.ReadAll(c.Conn())
			ended[i], messages[i] = time.Now(), b
		}()
	}
	start := time.Now()
	require.NoError(t, revoke.Publish(ctx, env.bus.JS, revoke.Revocation{Kind: revoke.KindIdentity, Value: "svc-victim", Reason: "credential leaked (INC-7)", By: "sec-oncall", At: start}, schemas.Identity{Subject: "sec-oncall"}))
	wg.Wait()
	var lat []time.Duration
	for i := range ended {
		lat = append(lat, ended[i].Sub(start))
		require.Contains(t, string(messages[i]), "57P01")
		require.Contains(t, string(messages[i]), "terminating connection: access revoked by sec-oncall: credential leaked (INC-7)")
	}
	slices.Sort(lat)
	t.Logf("revocation to session end over %d sessions: p50 %v, p99 %v, max %v", n, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])

	// The statement in flight was cancelled on the backend, not left running.
	var pgErr *pgconn.PgError
	require.ErrorAs(t, <-busyErr, &pgErr)
	require.Equal(t, "57P01", pgErr.Code)
	require.Eventually(t, func() bool { return env.backendGone(ctx, pid) }, 10*time.Second, 50*time.Millisecond)

	// New sessions are refused; others go on.
	_, err = connAs(victim)
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "28000", pgErr.Code)
	require.Contains(t, pgErr.Message, "access revoked for svc-victim by sec-oncall")
	_, err = other.Exec(ctx, "select 1").ReadAll()
	require.NoError(t, err)

	// The end and its cause are in the trail.
	var terminated, endedRevoked int
	for _, line := range bytes.Split(readAll(t, env.bus, "app"), []byte{'\n'}) {
		var e schemas.Event
		require.NoError(t, json.Unmarshal(line, &e))
		if e.Identity.Subject != "svc-victim" {
			continue
		}
		switch e.Type {
		case schemas.TypeSessionTerminated:
			var p schemas.SessionTerminated
			require.NoError(t, e.Decode(&p))
			require.Equal(t, "revoked", p.Cause)
			require.Equal(t, "identity:svc-victim", p.Revocation)
			terminated++
		case schemas.TypeSessionEnd:
			var p schemas.SessionEnd
			require.NoError(t, e.Decode(&p))
			if p.Reason == "revoked" {
				endedRevoked++
			}
		}
	}
	require.Equal(t, n+1, terminated)
	require.Equal(t, n+1, endedRevoked)

	// Lifted: the identity may connect again.
	require.NoError(t, revoke.Publish(ctx, env.bus.JS, revoke.Revocation{Kind: revoke.KindIdentity, Value: "svc-victim", By: "sec-oncall", At: time.Now(), Lifted: true}, schemas.Identity{Subject: "sec-oncall"}))
	require.Eventually(t, func() bool {
		c, err := connAs(victim)
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

func TestSessionEndsWhenTheTokenExpires(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := env.mint(identity.TokenRequest{Subject: "svc-short", Groups: []string{"app"}, TTL: 3 * time.Second})
	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=app user=x password=%s sslmode=disable", env.host, env.port, tok))
	require.NoError(t, err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "select 1").ReadAll()
	require.NoError(t, err)
	b, _ := io.ReadAll(c.Conn())
	require.Contains(t, string(b), "terminating connection: the access token expired at")
}
