package sqlscan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Chains that pg_query's C code recurses into (100,000 of them crash the process) are
// bounded from below by Depth; the large statements applications send are not.
func TestDepthBoundsChains(t *testing.T) {
	const n = 30000
	rep := func(s string) string { return strings.Repeat(s, n) }
	for name, sql := range map[string]string{
		"plus":         "select 1" + rep("+1"),
		"concat":       "select 'a'" + rep("||'a'"),
		"union":        "select 1" + rep(" union select 1"),
		"union, items": "select 1, 2" + rep(" union select 1, 2"),
		"joins":        "select 1 from a" + rep(" join a on true"),
		"casts":        "select 1" + rep("::int"),
		"not":          "select " + rep("not ") + "true",
		"minus":        "select " + rep("- ") + "1",
		"jsonb ?":      "select x" + rep(" ? 'a'"),
		"case":         "select " + rep("case when true then ") + "1" + rep(" end"),
		"case, and":    "select " + rep("case when 1=1 and ") + "true" + rep(" then 1 end = 1"),
		"between":      "select x" + rep(" between 1 and x") + " between 1 and 2",
		"parens":       "select " + rep("(") + "1" + rep(")"),
		"or of plus":   "select 1 where x = 1 or 1" + rep("+1"),
		"statements":   "select 1; select 1" + rep("+1"),
		"commented":    "select 1 /* ; */" + rep("+1"),
	} {
		d, ok := Depth(sql)
		require.True(t, ok, name)
		require.GreaterOrEqual(t, d, n, name)
	}
	var values, ors, ins, cols, cases strings.Builder
	values.WriteString("values")
	ors.WriteString("select 1 from t where id = 0")
	ins.WriteString("select 1 from t where id in (0")
	cols.WriteString("select 0")
	cases.WriteString("select case")
	for i := 1; i <= 65535; i++ {
		fmt.Fprintf(&values, " ($%d::text),", i)
		fmt.Fprintf(&ors, " or id = $%d and k = 'x'", i)
		fmt.Fprintf(&ins, ", %d", i)
		fmt.Fprintf(&cols, ", a%d + 1 as c%d", i, i)
		fmt.Fprintf(&cases, " when x = %d then 'y'", i)
	}
	ins.WriteString(")")
	cases.WriteString(" end")
	for name, sql := range map[string]string{"pgx's 65,535 parameters": strings.TrimSuffix(values.String(), ","), "OR chain": ors.String(),
		"IN list": ins.String(), "columns": cols.String(), "CASE branches": cases.String(),
		"text with operators": "select '" + strings.Repeat("+-*/", 100000) + "', $$" + strings.Repeat("+", 100000) + "$$ -- " + strings.Repeat("+", 1000)} {
		d, ok := Depth(sql)
		require.True(t, ok, name)
		require.Less(t, d, 10, name)
	}
	_, ok := Depth("select 'open")
	require.False(t, ok)
}

func BenchmarkDepth(b *testing.B) {
	var values strings.Builder
	values.WriteString("values")
	for i := 1; i <= 65535; i++ {
		fmt.Fprintf(&values, " ($%d::text),", i)
	}
	sql := strings.TrimSuffix(values.String(), ",")
	b.SetBytes(int64(len(sql)))
	for b.Loop() {
		Depth(sql)
	}
}

// node-postgres's test of a big query: 2,000 SELECTs in a UNION ALL chain.
func TestDepthOfAUnionChainIsItsLength(t *testing.T) {
	var parts []string
	for i := 0; i < 2000; i++ {
		parts = append(parts, fmt.Sprintf("select %d as c%d", i, i))
	}
	d, ok := Depth(strings.Join(parts, " union all "))
	require.True(t, ok)
	require.Equal(t, 1999, d)
}

// Found by attacking the bound: a run of + and - is as many prefix operators as it has
// characters; joins in different branches of a UNION do not nest.
func TestDepthCountsOperatorCharactersAndJoinsPerBranch(t *testing.T) {
	d, ok := Depth("declare c cursor for select " + strings.Repeat("+", 4700) + "1")
	require.True(t, ok)
	require.GreaterOrEqual(t, d, 4700)
	var parts []string
	for i := 0; i < 2000; i++ {
		parts = append(parts, fmt.Sprintf("select o.id as c%d from orders o join customers c on c.id = o.customer_id join items i on i.id = o.id", i))
	}
	d, ok = Depth(strings.Join(parts, " union all "))
	require.True(t, ok)
	require.Less(t, d, 2100)
	d, ok = Depth("select 1 from a" + strings.Repeat(" join a on true", 5000) + " union select 1")
	require.True(t, ok)
	require.GreaterOrEqual(t, d, 5000)
}
