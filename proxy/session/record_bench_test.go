package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// BenchmarkRecordStatement: what recording one pgbench-like statement costs a buffered
// session: its query, (cached) decision, one-row result and end, encoded into the hash
// chain, compressed and stored by JetStream (embedded, in this process) as the publisher's
// sweeps send them. The proxy pays this on top of relaying the statement.
func BenchmarkRecordStatement(b *testing.B) {
	bus := bustest.Connect(b)
	d := fixedDecider{Effect: schemas.EffectAllow, Policy: "bench", Rule: "bench-reads", Reason: "rule bench-reads matched", Revision: 3393301679376328,
		Fingerprint: "348bee4e67e86ca6", Kinds: []string{"select"}, Tables: []string{"public.pgbench_accounts"}, Cacheable: true}
	s, pub := newLingeringSession(b, bus, "buffered", d, 5*time.Millisecond)
	ctx := context.Background()
	cols := []schemas.Column{{Name: "abalance", TableOID: 16392, Attnum: 3, TypeOID: 23}}
	row := [][]byte{[]byte("-4711")}
	b.ReportAllocs()
	for b.Loop() {
		q := s.OnQuery(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", "simple", "")
		r := s.NewResult(q)
		r.Columns(cols)
		r.Row(row)
		r.Tag("SELECT 1")
		r.Done("ok")
	}
	b.StopTimer()
	if err := pub.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
