package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/identity"
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
	// The clients of the many idle sessions live in a process of their own, as clients do:
	// in this one their wake-ups would compete with the proxy's for the same threads.
	helper := exec.Command(os.Args[0], "-test.run=^TestRevocationClientsHelper$")
	helper.Env = append(os.Environ(), "GH_HELPER_CONN="+fmt.Sprintf("host=%s port=%s dbname=app user=x password=%s sslmode=disable", env.host, env.port, victim),
		"GH_HELPER_N="+strconv.Itoa(n))
	helperOut, err := helper.StdoutPipe()
	require.NoError(t, err)
	helper.Stderr = os.Stderr
	require.NoError(t, helper.Start())
	lines := bufio.NewScanner(helperOut)
	require.True(t, lines.Scan(), "helper: %v", lines.Err())
	require.Equal(t, "READY", lines.Text())
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

	start := time.Now()
	require.NoError(t, bus.PublishRevocation(ctx, env.bus.JS, schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "svc-victim", Reason: "credential leaked (INC-7)", By: "sec-oncall", At: start}, schemas.Identity{Subject: "sec-oncall"}))
	var lat []time.Duration
	for len(lat) < n && lines.Scan() {
		f := strings.Fields(lines.Text())
		require.Len(t, f, 2, lines.Text())
		ns, err := strconv.ParseInt(f[0], 10, 64)
		require.NoError(t, err)
		require.Equal(t, "57P01", f[1], "each client got the FATAL 57P01 before the end")
		lat = append(lat, time.Unix(0, ns).Sub(start))
	}
	require.Len(t, lat, n)
	_, _ = io.Copy(io.Discard, helperOut)
	require.NoError(t, helper.Wait())
	slices.Sort(lat)
	t.Logf("revocation to session end over %d sessions (clients in another process): p50 %v, p99 %v, max %v", n, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])

	// The statement in flight was cancelled on the backend, not left running.
	var pgErr *pgconn.PgError
	require.ErrorAs(t, <-busyErr, &pgErr)
	require.Equal(t, "57P01", pgErr.Code)
	require.Equal(t, "terminating connection: access revoked by sec-oncall: credential leaked (INC-7)", pgErr.Message)
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
	require.NoError(t, bus.PublishRevocation(ctx, env.bus.JS, schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: "svc-victim", By: "sec-oncall", At: time.Now(), Lifted: true}, schemas.Identity{Subject: "sec-oncall"}))
	require.Eventually(t, func() bool {
		c, err := connAs(victim)
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// TestRevocationClientsHelper is the client process of the revocation test: it opens
// GH_HELPER_N sessions, says READY, and prints for each the time its stream ended and the
// error code it got first.
func TestRevocationClientsHelper(t *testing.T) {
	conn := os.Getenv("GH_HELPER_CONN")
	if conn == "" {
		t.Skip("run by TestRevocationEndsLiveSessionsAndRefusesNewOnes")
	}
	n, _ := strconv.Atoi(os.Getenv("GH_HELPER_N"))
	ctx := context.Background()
	conns := make([]*pgconn.PgConn, n)
	for i := range conns {
		c, err := pgconn.Connect(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY")
	out.Flush()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := io.ReadAll(c.Conn())
			at := time.Now().UnixNano()
			code := "none"
			if i := bytes.Index(b, []byte("C57P01")); i >= 0 {
				code = "57P01"
			}
			mu.Lock()
			fmt.Fprintf(out, "%d %s\n", at, code)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.Flush()
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

func TestSessionOutlivesItsTokenUpToTheMaximumLifetime(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := env.mint(identity.TokenRequest{Subject: "svc-batch", Groups: []string{"app"}, TTL: 2 * time.Second})
	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=app-long user=x password=%s sslmode=disable", env.host, env.port, tok))
	require.NoError(t, err)
	defer c.Close(ctx)
	opened := time.Now()
	time.Sleep(2500 * time.Millisecond) // the token has expired: with token_expiry continue the session goes on
	_, err = c.Exec(ctx, "select 1").ReadAll()
	require.NoError(t, err)
	b, _ := io.ReadAll(c.Conn())
	require.Contains(t, string(b), "terminating connection: the session reached the maximum lifetime of 4s on this resource")
	require.Greater(t, time.Since(opened), 3*time.Second, "it outlived its token (2s) up to the lifetime (4s, counted from the session's start)")
}
