package session_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

// natsWithMaxPayload starts a NATS server with a max_payload (a NATS server's default is
// 1 MiB) and connects to it.
func natsWithMaxPayload(t *testing.T, max int32) *nats.Conn {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true, MaxPayload: max})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(ns.Shutdown)
	require.True(t, ns.ReadyForConnections(30*time.Second))
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// pgxMaxParams is pgx's TestConnExecPreparedMaxNumberOfParams: 65,535 bind parameters,
// the protocol's most, in a VALUES list (1 MB of text).
func pgxMaxParams() string {
	var b strings.Builder
	b.WriteString("values")
	for i := 1; i <= 65535; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d::text)", i)
	}
	return b.String()
}

// A legitimate statement does not fail because it is large: the request is compressed to
// fit a NATS message, the deadline grows with the statement, and what is over the bound
// the policy analyses is refused saying so.
func TestNATSDeciderDecidesLargeStatements(t *testing.T) {
	nc := natsWithMaxPayload(t, 512<<10)
	eng, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "reads", Effect: "allow", When: `request.sql.read_only`},
	}}}, 1)
	require.NoError(t, err)
	svc := policy.NewService(nc, eng, prometheus.NewRegistry(), discard)
	svc.Catalogs = &policy.Catalogs{OnError: func(r string, err error) { t.Errorf("catalog of %s: %v", r, err) }}
	svc.Catalogs.Set(&schemas.Catalog{Resource: "demo", Version: "1", Builtins: map[string][]string{"i": {"textin"}, "v": {"random"}}})
	require.NoError(t, svc.Start(context.Background()))
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	d := &session.NATSDecider{NC: nc, Timeout: 10 * time.Second}
	ask := func(sql string) schemas.DecisionReply {
		return d.Decide(context.Background(), &schemas.DecisionRequest{Identity: schemas.Identity{Subject: "orm"}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: sql}})
	}

	sql := pgxMaxParams()
	require.Greater(t, len(sql), 1<<20-20<<10, "over this server's max_payload as it is")
	got := ask(sql)
	require.Equal(t, "allow", got.Effect, got.Reason)
	require.Equal(t, "reads", got.Rule)

	// Over the bound: refused by the proxy before it is sent, as the policy service would.
	huge := strings.Repeat("select 1;", schemas.MaxStatementBytes/9+1)
	got = ask(huge)
	require.Equal(t, "deny", got.Effect)
	require.Equal(t, "statement-size", got.Rule)
	require.Equal(t, "54000", got.SQLState)
	require.Contains(t, got.Reason, fmt.Sprintf("the statement is %d bytes, over the %d bytes the policy analyses", len(huge), schemas.MaxStatementBytes))
	got = eng.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "demo"}, SQL: &schemas.SQLRequest{Text: huge}}}, time.Now())
	require.Equal(t, "statement-size", got.Rule, "the engine holds the bound too")

	// What does not compress below max_payload is refused with what to change.
	noise := make([]byte, 600<<10)
	_, _ = rand.Read(noise)
	got = ask("select '" + base64.RawStdEncoding.EncodeToString(noise) + "'")
	require.Equal(t, "deny", got.Effect)
	require.Contains(t, got.Reason, "over the NATS server's max_payload of 524288; refusing (fail closed): raise max_payload")

	// A compressed request the service cannot read is refused, not guessed at.
	m, err := nc.RequestMsg(&nats.Msg{Subject: bus.SubjectDecide, Data: []byte("not s2"),
		Header: nats.Header{schemas.HeaderDecideEncoding: {schemas.EncodingS2}}}, 10*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(m.Data), `"effect":"deny"`)
	require.Contains(t, string(m.Data), "malformed decision request")
	m, err = nc.RequestMsg(&nats.Msg{Subject: bus.SubjectDecide, Data: []byte("{}"),
		Header: nats.Header{schemas.HeaderDecideEncoding: {"gzip"}}}, 10*time.Second)
	require.NoError(t, err)
	require.Contains(t, string(m.Data), `unknown Gatehouse-Encoding \"gzip\"`)

	// Small statements are answered while large ones are being decided (their own lane).
	// The large ones queue for their lane, so they get a deadline that a loaded machine
	// (or the race detector) cannot run out: this part is about the lanes.
	patient := &session.NATSDecider{NC: nc, Timeout: 2 * time.Minute}
	done := make(chan schemas.DecisionReply, 4)
	for range 4 {
		go func() {
			done <- patient.Decide(context.Background(), &schemas.DecisionRequest{Identity: schemas.Identity{Subject: "orm"}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: sql}})
		}()
	}
	for range 50 {
		require.Equal(t, "allow", ask("select 1").Effect)
	}
	for range 4 {
		d := <-done
		require.Equal(t, "allow", d.Effect, d.Reason)
	}
}
