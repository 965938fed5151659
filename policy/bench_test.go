package policy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
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
	req := &policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "svc-orders", Groups: []string{"orders-readers"}}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: benchSQL}}, Catalog: testCatalog}
	now := time.Now()
	for b.Loop() {
		if d := e.Decide(req, now); d.Effect != "allow" {
			b.Fatal(d.Reason)
		}
	}
}

// bigInsert is an INSERT of rows×cols bind parameters, as ORMs batch (pgx's test sends 65,535).
func bigInsert(params int) string {
	var b strings.Builder
	b.WriteString("insert into orders (customer_id, item, amount, note, total) values ")
	for i := 1; i <= params; i += 5 {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "($%d,$%d,$%d,$%d,$%d)", i, i+1, i+2, i+3, i+4)
	}
	return b.String()
}

// BenchmarkDecideBigInsert: a decision's time against the parameter count, up to the
// protocol's 65,535.
func BenchmarkDecideBigInsert(b *testing.B) {
	e, err := policy.Compile(demo, 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{5, 500, 5000, 65535} {
		for shape, sql := range map[string]string{"insert": bigInsert(n), "values": bigValues(n)} {
			b.Run(fmt.Sprintf("%s/params=%d/bytes=%d", shape, n, len(sql)), func(b *testing.B) {
				req := &policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "d", Groups: []string{"dba"}}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: sql}}, Catalog: testCatalog}
				for b.Loop() {
					if d := e.Decide(req, time.Now()); d.Effect != "allow" {
						b.Fatal(d.Reason)
					}
				}
			})
		}
	}
}

// bigValues is pgx's TestConnExecPreparedMaxNumberOfParams: values ($1::text), ($2::text), ...
func bigValues(params int) string {
	var b strings.Builder
	b.WriteString("values")
	for i := 1; i <= params; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d::text)", i)
	}
	return b.String()
}
