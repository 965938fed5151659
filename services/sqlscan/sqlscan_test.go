package sqlscan

import (
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
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

// literalRanges are the byte ranges PostgreSQL's own scanner (pg_query's, the policy's)
// reads as literals and as comments; ok is false when it cannot scan sql, or the parser
// refuses it (a statement that does not parse is never decided from the cache).
func literalRanges(sql string) (lits, comments [][2]int, ok bool) {
	if _, err := pg_query.Parse(sql); err != nil {
		return nil, nil, false
	}
	res, err := pg_query.Scan(sql)
	if err != nil {
		return nil, nil, false
	}
	for _, tok := range res.Tokens {
		r := [2]int{int(tok.Start), int(tok.End)}
		switch tok.Token {
		case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST, pg_query.Token_ICONST, pg_query.Token_FCONST:
			lits = append(lits, r)
		case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			comments = append(comments, r)
		}
	}
	return lits, comments, true
}

// checkAgainstScanner holds Normalize to PostgreSQL's scanner: what it replaces is exactly
// the literals the scanner sees (up to a prefix such as E, B, X or U&), so that two texts
// with one cache key are one statement to the policy.
func checkAgainstScanner(t *testing.T, sql string) {
	if strings.IndexByte(sql, 0) >= 0 {
		return // a statement is a C string on the wire: it cannot hold NUL
	}
	lits, _, ok := literalRanges(sql)
	if !ok {
		return
	}
	var got [][2]int
	nok := Lex(sql, func(k Kind, start, end int) {
		if k == Literal {
			got = append(got, [2]int{start, end})
		}
	})
	if !nok {
		return // never cached
	}
	// A string continued over a newline ('a'\n'b') is one literal to the scanner, two to
	// Normalize: join Normalize's when only whitespace lies between.
	var joined [][2]int
	for _, r := range got {
		if k := len(joined) - 1; k >= 0 && strings.TrimSpace(sql[joined[k][1]:r[0]]) == "" && strings.ContainsAny(sql[joined[k][1]:r[0]], "\n\r") {
			joined[k][1] = r[1]
			continue
		}
		joined = append(joined, r)
	}
	require.Equal(t, len(lits), len(joined), "%q: scanner literals %v, normalized %v", sql, lits, joined)
	for i := range lits {
		require.Equal(t, lits[i][1], joined[i][1], "%q: literal %d ends at %d for the scanner, %d for Normalize", sql, i, lits[i][1], joined[i][1])
		require.True(t, joined[i][0] >= lits[i][0] && joined[i][0] <= lits[i][0]+2, "%q: literal %d starts at %d for the scanner, %d for Normalize", sql, i, lits[i][0], joined[i][0])
	}
}

func TestNormalizeAgreesWithThePostgreSQLScanner(t *testing.T) {
	for _, sql := range normalizeCorpus {
		checkAgainstScanner(t, sql)
	}
}

// normalizeCorpus holds the lexical corners: comments ending at \r, nested comments,
// E” strings with escaped quotes, U& strings, dollar quotes, continuation strings,
// quoted identifiers, numbers in every form.
var normalizeCorpus = []string{
	"select 1", "select --\r'\n', id from t --'\n", "select --\r'\n' ; select 2 --'\n", "select 1 --x\r\n, 2",
	"select /* a /* b */ c */ 'x'", "select E'a\\'b', e'\\\\', 'c'", "select U&'\\0041', U&\"x\"", "select $$a$$, $t$ 'x' $t$, $1",
	"select 'a'\n'b', 'c' 'd'", `select "a""b", "x'y"`, "select 1e5, .5, 1.5e-3, 0x1F, 1_000, 0b101, 0o17",
	"select b'0101', x'ff', n'abc'", "select a$b from t", "select 'x'::text", "select E'\\'' from t -- '",
	"select 1/*'*/, '*/'", "select $a$ $b$ $a$", "select 1--\n, 2", "select '--', '/*'", "select e'--\\''",
	// A string goes on after whitespace with a newline, in its own mode: E'a'\n'\''.
	"select E'a'\n'\\'' as x, 1 -- '", "select e'a' \t\n\t '\\''; select 2 -- '", "select 'a'\r'b', 2", "select E'a'\n\n'b\\'c'",
}

// A string continued on the next line keeps its mode: the cache key of an E string whose
// continuation starts with an escaped quote cannot be shared with a text that hides
// another statement in what would otherwise be read as a string.
func TestContinuedStringsKeepTheirMode(t *testing.T) {
	keys := map[string]bool{}
	for _, sql := range []string{
		"select E'a'\n'\\'' as x, 1 -- '",
		"select E'a'\n'\\''; delete from orders -- '",
		"select E'a'\n'\\'', (select card_number from customers) -- '",
	} {
		k, ok := Normalize(sql)
		require.True(t, ok, sql)
		require.False(t, keys[k], "%q shares its key %q with another statement", sql, k)
		keys[k] = true
		checkAgainstScanner(t, sql)
	}
	for _, sql := range []string{"select 'a' -- c\n'b'", "select 'a' /* c */\n'b'", "select 'a'\n/* c */ 'b'"} {
		_, ok := Normalize(sql)
		require.False(t, ok, "%q: a comment in a continuation is not read with confidence", sql)
	}
}

func FuzzNormalizeAgreesWithThePostgreSQLScanner(f *testing.F) {
	for _, s := range normalizeCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) { checkAgainstScanner(t, sql) })
}

// BenchmarkNormalize: the proxy's cache key for a statement.
func BenchmarkNormalize(b *testing.B) {
	for b.Loop() {
		Normalize("SELECT abalance FROM pgbench_accounts WHERE aid = 48213 AND note = 'it''s' -- c")
	}
}
