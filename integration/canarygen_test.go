package integration

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// trickGen generates statements that try to get a masked column (customers.card_number,
// customers.email) out past the masking: under other names, inside whole rows, through
// casts and string and numeric functions, set operations, subqueries, CTEs, LATERAL,
// aggregates, windows, sorting and filtering, COPY, cursors and prepared statements.
type trickGen struct {
	r *rand.Rand
	n int // statements made, for unique names
}

func (g *trickGen) pick(l ...string) string { return l[g.r.IntN(len(l))] }

// masked is a reference to a masked column (or a whole row holding one), as the FROM
// clause of from names it.
func (g *trickGen) masked(alias string, cols [4]string) string {
	col := cols[2+g.r.IntN(2)] // email or card_number
	switch g.r.IntN(9) {
	case 0:
		return alias // the whole row
	case 1:
		return "(" + alias + ")." + col
	case 2:
		return alias + ".*"
	case 3:
		return col
	case 4:
		return fmt.Sprintf("%s(%s)", g.pick("card_number", "email"), alias) // functional notation
	}
	return alias + "." + col
}

// transform wraps an expression in something that computes from it.
func (g *trickGen) transform(e string) string {
	if strings.HasSuffix(e, ".*") {
		return g.pick("row("+e+")::text", "row_to_json(row("+e+"))::text", "array["+strings.TrimSuffix(e, ".*")+"]::text", e)
	}
	switch g.r.IntN(41) {
	case 0:
		return e
	case 1:
		return e + "::text"
	case 2:
		return e + "::bytea"
	case 3:
		return e + "::varchar(12)"
	case 4:
		return e + "::char(8)"
	case 5:
		return "'.' || " + e
	case 6:
		return e + " || ''"
	case 7:
		return "upper(" + e + "::text)"
	case 8:
		return "reverse(" + e + "::text)"
	case 9:
		return fmt.Sprintf("substr(%s::text, %d, %d)", e, 1+g.r.IntN(8), 4+g.r.IntN(10))
	case 10:
		return fmt.Sprintf("left(%s::text, %d)", e, 6+g.r.IntN(8))
	case 11:
		return "translate(" + e + "::text, '0123456789', 'abcdefghij')"
	case 12:
		return "encode(convert_to(" + e + "::text, 'UTF8'), '" + g.pick("hex", "base64", "escape") + "')"
	case 13:
		return "(" + e + "::text)::numeric + 1"
	case 14:
		return "((" + e + "::text)::numeric * 2)::text"
	case 15:
		return "to_json(" + e + ")::text"
	case 16:
		return "json_build_object('v', " + e + ")::text"
	case 17:
		return "array[" + e + "]::text"
	case 18:
		return "format('%s', " + e + ")"
	case 19:
		return "concat('x', " + e + ", 'y')"
	case 20:
		return "concat_ws('-', " + e + ", " + e + ")"
	case 21:
		return "quote_literal(" + e + "::text)"
	case 22:
		return "lpad(" + e + "::text, 30, '*')"
	case 23:
		return "overlay(" + e + "::text placing 'zz' from 2 for 1)"
	case 24:
		return "regexp_replace(" + e + "::text, '(.)', '\\1 ', 'g')"
	case 25:
		return "split_part(" + e + "::text, '@', 1)"
	case 26:
		return "length(" + e + "::text)"
	case 27:
		return "ascii(" + e + "::text)"
	case 28:
		return "strpos(" + e + "::text, '4')"
	case 29:
		return "md5(" + e + "::text)"
	case 30:
		return "coalesce(" + e + "::text, 'none')"
	case 31:
		return "nullif(" + e + "::text, 'x')"
	case 32:
		return "case when " + e + " is not null then " + e + "::text end"
	case 33:
		return "greatest(" + e + "::text, 'a')"
	case 34:
		return "to_hex((" + e + "::text)::numeric::bigint)"
	case 35:
		return "string_to_array(" + e + "::text, '1')::text"
	case 36:
		return "initcap(" + e + "::text)"
	case 37:
		return "replace(" + e + "::text, '1', '-1-')"
	case 38:
		return "(" + e + "::text)::float8::text"
	case 39:
		// Errors that quote the value they could not take, in several classes.
		return g.pick("("+e+"::text)::regclass::text", "current_setting("+e+"::text)", "("+e+"::text)::json::text",
			"to_tsquery("+e+"::text || ' & & ')::text", "has_table_privilege("+e+"::text, 'select')::text", "("+e+"::text)::int::text",
			"(case when "+e+"::text like '4%' then null end)", "nullif("+e+"::text, 'x')")
	}
	return "row(" + e + ", 1)::text"
}

// aggregate wraps an expression in an aggregate (the statement then groups).
func (g *trickGen) aggregate(e string) string {
	switch fn := g.pick("max", "min", "string_agg", "array_agg", "json_agg", "count", "bool_or"); fn {
	case "string_agg":
		return "string_agg(" + e + "::text, ',')"
	case "bool_or":
		return "bool_or(" + e + "::text like '4%')"
	default:
		return fn + "(" + e + ")"
	}
}

// from is a FROM clause over customers under another name, and how its columns are named.
func (g *trickGen) from() (string, string, [4]string) {
	cols := [4]string{"id", "name", "email", "card_number"}
	switch g.r.IntN(7) {
	case 0:
		cols = [4]string{"i", "n", "em", "cn"}
		return "customers t(i, n, em, cn)", "t", cols
	case 1:
		return "(select * from customers) s", "s", cols
	case 2:
		cols = [4]string{"a", "b", "c", "d"}
		return "(select id, name, email, card_number from customers) s(a, b, c, d)", "s", cols
	case 3:
		return "public.customers c", "c", cols
	case 4:
		return "customers c join orders o on o.customer_id = c.id", "c", cols
	case 5:
		return "orders o, lateral (select * from customers c where c.id = o.customer_id) c", "c", cols
	}
	return "customers c", "c", cols
}

// next makes one statement.
func (g *trickGen) next() string {
	g.n++
	from, alias, cols := g.from()
	m := g.masked(alias, cols)
	expr := g.transform(m)
	switch g.r.IntN(23) {
	case 0:
		return fmt.Sprintf("select %s from %s", expr, from)
	case 1:
		return fmt.Sprintf("select %s.%s, %s from %s", alias, cols[0], expr, from)
	case 2:
		return fmt.Sprintf("with k as (select %s as v from %s) select v from k", expr, from)
	case 3:
		return fmt.Sprintf("select v from (select %s as v from %s) z", expr, from)
	case 4:
		return fmt.Sprintf("select (select %s from %s limit 1)", expr, from)
	case 5:
		return fmt.Sprintf("select %s::text from %s union all select item from orders", expr, from)
	case 6:
		return fmt.Sprintf("select %s::text from %s union select item from orders", expr, from)
	case 7:
		return fmt.Sprintf("select %s::text from %s intersect select '4111111111111111'", expr, from)
	case 8:
		return fmt.Sprintf("select %s.%s from %s where %s::text like '%d%%'", alias, cols[0], from, m, g.r.IntN(10))
	case 9:
		return fmt.Sprintf("select %s.%s, %s from %s order by %d", alias, cols[0], expr, from, 1+g.r.IntN(2))
	case 10:
		return fmt.Sprintf("select %s from %s group by 1", expr, from)
	case 11:
		return fmt.Sprintf("select count(*) from %s where %s::text > '%d'", from, m, g.r.IntN(10))
	case 12:
		return fmt.Sprintf("select %s from %s", g.aggregate(expr), from)
	case 13:
		return fmt.Sprintf("select row_number() over (order by %s) from %s", m, from)
	case 14:
		return fmt.Sprintf("select distinct %s from %s", expr, from)
	case 15:
		return fmt.Sprintf("copy (select %s.%s, %s from %s) to stdout%s", alias, cols[0], expr, from, g.pick("", "", " with (format csv)", " csv header", " with (delimiter ',')"))
	case 16:
		return fmt.Sprintf("select x from %s, lateral (select %s as x) l", from, expr)
	case 17:
		return fmt.Sprintf("select %s.%s from %s where exists (select 1 from customers d where d.card_number = %s.%s)", alias, cols[0], from, alias, cols[3])
	case 18:
		return fmt.Sprintf("values ((select %s from %s limit 1))", expr, from)
	case 19:
		return fmt.Sprintf("begin; declare k%d cursor for select %s from %s; fetch all from k%d; commit", g.n, expr, from, g.n)
	case 20:
		return fmt.Sprintf("prepare p%d as select %s from %s; execute p%d; deallocate p%d", g.n, expr, from, g.n, g.n)
	case 21:
		// A comment that ends at \r: a tokenizer that ends it at \n alone sees one string
		// literal here, whatever the expression (the decision cache's key once did).
		return fmt.Sprintf("select --\r'\n', %s from %s --'\n", g.pick(m, alias+"."+cols[0]), from)
	}
	return fmt.Sprintf("select %s, %s from %s", expr, g.transform(g.masked(alias, cols)), from)
}
