package session

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
)

// BenchmarkCachedDecision: a decision served from the proxy's cache (the hot path).
func BenchmarkCachedDecision(b *testing.B) {
	next := &countingDecider{d: schemas.DecisionReply{Effect: "allow", Revision: 1, Cacheable: true}}
	c, err := NewCachingDecider(next, nil, time.Minute, 1000, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	r := req("svc", []string{"a", "b"}, "SELECT abalance FROM pgbench_accounts WHERE aid = 1")
	ctx := context.Background()
	lat := latencies{}
	for b.Loop() {
		t := time.Now()
		c.Decide(ctx, r)
		lat.add(time.Since(t))
	}
	lat.report(b)
	if next.calls != 1 {
		b.Fatalf("%d calls to the policy service", next.calls)
	}
}

// BenchmarkDecisionThroughNATS: a cache-miss decision, proxy → gh.policy.decide → policy
// service → reply, over an embedded NATS.
func BenchmarkDecisionThroughNATS(b *testing.B) {
	bus := bustest.Connect(b)
	eng, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"*"}, Rules: []config.Rule{
		{Name: "read", Effect: "allow", When: `request.sql.kinds.all(k, k == "select")`}}}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := policy.NewService(bus.NC, eng, prometheus.NewRegistry(), log)
	if err := svc.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	d := &NATSDecider{NC: bus.NC, Timeout: 2 * time.Second}
	r := req("svc", []string{"a"}, "SELECT abalance FROM pgbench_accounts WHERE aid = 1")
	ctx := context.Background()
	lat := latencies{}
	for b.Loop() {
		t := time.Now()
		if got := d.Decide(ctx, r); got.Effect != "allow" {
			b.Fatal(got.Reason)
		}
		lat.add(time.Since(t))
	}
	lat.report(b)
}

// latencies collects per-operation times and reports their median and 99th percentile
// (the timing itself adds some tens of nanoseconds).
type latencies []time.Duration

func (l *latencies) add(d time.Duration) { *l = append(*l, d) }

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l[len(l)*99/100].Nanoseconds())/1e3, "p99-µs")
}
