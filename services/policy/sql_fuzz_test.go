package policy_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/services/policy"
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
