package policy_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// FuzzAnalyzeSQL: any statement text, however malformed, is analysed without a panic (the
// policy service analyses what any caller sends).
func FuzzAnalyzeSQL(f *testing.F) {
	for _, s := range []string{
		"select 1", "DECLARE c CURSOR FOR SELECT * FROM secret; FETCH ALL FROM c",
		"PREPARE p AS delete from orders; EXECUTE p", "with x as (delete from t returning *) select * from x",
		"EXPLAIN ANALYZE DELETE FROM t", "select card_number from customers where card_number like '4%' order by email",
		"copy (select 1) to stdout", "DECLARE c CURSOR FOR", "select $1::int", "/* unterminated",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		info := policy.AnalyzeSQL(sql)
		// Whatever it is, the analysis names no table twice.
		seen := map[string]bool{}
		for _, tb := range info.Tables {
			if seen[tb] {
				t.Fatalf("%q: table %s listed twice in %v", sql, tb, info.Tables)
			}
			seen[tb] = true
		}
	})
}

// FuzzLineage: any statement is traced against a catalog (views, inheritance, cascades)
// without a panic, and every decision under a mask is a plan or a refusal.
func FuzzLineage(f *testing.F) {
	for _, s := range []string{
		"select * from customers c join public.orders o on o.customer_id = c.id",
		"with recursive r(n, c) as (select 1, card_number from customers union all select n + 1, c from r where n < 3) select * from r",
		"select (c).*, c from customers c, lateral (select email) e order by 2",
		"insert into customers select * from customers on conflict (id) do update set email = excluded.email returning *",
		"merge into customers c using orders o on o.customer_id = c.id when matched then update set name = 'x'",
		"select * from customers natural join customers d using (id)", "create table t as execute p",
		"select x from rows from (generate_series(1, 2), unnest(array[1])) f(x, y)",
		"copy (select email from customers) to stdout with (format csv)",
		"alter table customers add column z text generated always as (email) stored",
	} {
		f.Add(s)
	}
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "all", Effect: "allow", When: "true"},
		{Name: "cards", Effect: "mask", When: "true", Mask: &config.Mask{Columns: []string{"customers.card_number", "crm.people.email"}, Method: "partial"}},
	}}}, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "demo"}, SQL: &schemas.SQLRequest{Text: sql}}, Catalog: testCatalog}, time.Now())
		if d.Effect == schemas.EffectMask && (d.Mask == nil || !d.Mask.Planned) {
			t.Fatalf("%q: a mask decision without a plan: %+v", sql, d)
		}
	})
}
