package policy_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/policy"
)

const benchSQL = "SELECT o.id, o.item, o.amount FROM public.orders o WHERE o.customer_id = 42 AND o.created_at > now() - interval '1 day' ORDER BY o.id LIMIT 10"

// BenchmarkAnalyzeSQL: the PostgreSQL parser's share of a decision.
func BenchmarkAnalyzeSQL(b *testing.B) {
	for b.Loop() {
		policy.AnalyzeSQL(benchSQL)
	}
}

// BenchmarkDecide: parse + CEL evaluation of the demo-like policies for one statement.
func BenchmarkDecide(b *testing.B) {
	e, err := policy.Compile(demo, 1)
	if err != nil {
		b.Fatal(err)
	}
	req := &policy.Request{Identity: schemas.Identity{Subject: "svc-orders", Groups: []string{"orders-readers"}},
		Resource: policy.Resource{Name: "demo", Type: "postgres"}, SQL: benchSQL, Catalog: testCatalog}
	now := time.Now()
	for b.Loop() {
		if d := e.Decide(req, now); d.Effect != "allow" {
			b.Fatal(d.Reason)
		}
	}
}
