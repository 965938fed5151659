package policy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/catalogs"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/pgtest"
)

// lineageFixture is a database with the ways a column can hide behind another name, a
// write behind another statement, and code behind a name.
const lineageFixture = `
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, card_number text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  item text NOT NULL, amount numeric(10,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, email, card_number) VALUES ('Ada', 'ada@example.com', '4111111111111111'), ('Alan', 'alan@example.com', '5500005555555559');
INSERT INTO orders (customer_id, item, amount) VALUES (1, 'engine', 10), (2, 'rotor', 20);
CREATE VIEW customer_cards AS SELECT id, card_number AS cn, upper(name) AS nm FROM customers;
CREATE VIEW cards_of_cards AS SELECT cn AS x, nm FROM customer_cards;
CREATE VIEW probing_view AS SELECT id FROM customers WHERE card_number LIKE '4%';
CREATE VIEW order_view AS SELECT id, item, amount FROM orders;
CREATE FUNCTION leak() RETURNS SETOF text LANGUAGE sql AS 'SELECT card_number FROM customers';
CREATE FUNCTION touch() RETURNS int LANGUAGE sql AS 'UPDATE customers SET name = name RETURNING 1';
CREATE FUNCTION count(text) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint';
CREATE FUNCTION shout(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT upper($1)';
CREATE VIEW calls_touch AS SELECT touch() AS t;
CREATE TABLE shipments (id int, customer_id int);
CREATE FUNCTION on_ship() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN UPDATE customers SET name = name WHERE id = NEW.customer_id; RETURN NEW; END$$;
CREATE TRIGGER ship AFTER INSERT ON shipments FOR EACH ROW EXECUTE FUNCTION on_ship();
CREATE TABLE customers_archive () INHERITS (customers);
CREATE TABLE notes (id int, body text);
CREATE TABLE customers_cards_gen (id int, card_number text, card_last4 text GENERATED ALWAYS AS (right(card_number, 4)) STORED) INHERITS (customers);
CREATE RULE notes_touch AS ON INSERT TO notes DO ALSO UPDATE customers SET name = name;
CREATE OPERATOR === (FUNCTION = int4eq, LEFTARG = int, RIGHTARG = int);
CREATE TABLE ca (id int PRIMARY KEY, p int REFERENCES ca ON DELETE CASCADE);
CREATE TABLE cb (id int PRIMARY KEY, a int REFERENCES ca ON DELETE CASCADE);
ALTER TABLE ca ADD COLUMN b int REFERENCES cb ON DELETE CASCADE;
CREATE SCHEMA crm;
CREATE TABLE crm.notes (id int, note text);
`

// lineagePolicies: readers may run anything read-only, with card numbers partially masked
// and emails tokenized; writers need approval for any write that reaches customers, or
// that runs code the gateway cannot see into.
var lineagePolicies = []config.Policy{{Name: "t", Resources: []string{"db"}, Rules: []config.Rule{
	{Name: "read", Effect: "allow", When: `"readers" in identity.groups && request.sql.statements > 0 && request.sql.kinds.all(k, k in ["select", "copy", "copy_to", "explain"])`},
	{Name: "cards", Effect: "mask", When: `"readers" in identity.groups`, Mask: &config.Mask{Columns: []string{"customers.card_number"}, Detectors: []string{"card"}, Method: "partial"}},
	{Name: "emails", Effect: "mask", When: `"readers" in identity.groups`, Mask: &config.Mask{Columns: []string{"customers.email"}, Method: "hmac"}},
	{Name: "edit", Effect: "allow", When: `"editors" in identity.groups`},
	{Name: "cards-for-editors", Effect: "mask", When: `"editors" in identity.groups`, Mask: &config.Mask{Columns: []string{"customers.card_number"}, Method: "partial"}},
	{Name: "emails-for-editors", Effect: "mask", When: `"editors" in identity.groups`, Mask: &config.Mask{Columns: []string{"customers.email"}, Method: "hmac"}},
	{Name: "customer-writes", Effect: "require_approval", When: `"writers" in identity.groups && (request.sql.tables_written.exists(t, t == "public.customers") || request.sql.unknown_writes.size() > 0)`, Reason: "needs approval"},
	{Name: "write", Effect: "allow", When: `"writers" in identity.groups`},
}}}

type lineageDB struct {
	cat *policy.Catalog
	raw *schemas.Catalog
	su  *pgconn.PgConn
}

func startLineageDB(t *testing.T) *lineageDB {
	t.Helper()
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, pg.Exec(ctx, "postgres", "CREATE DATABASE db"))
	require.NoError(t, pg.Exec(ctx, "db", lineageFixture))
	cfg, err := pgconn.ParseConfig(pg.SuperuserConnString("db"))
	require.NoError(t, err)
	raw, err := catalogs.ReadPostgres(ctx, cfg, "db")
	require.NoError(t, err)
	raw.Trusted = []string{"public.shout"}
	cat, err := policy.NewCatalog(raw)
	require.NoError(t, err)
	su, err := pgconn.Connect(ctx, pg.SuperuserConnString("db"))
	require.NoError(t, err)
	t.Cleanup(func() { su.Close(context.Background()) })
	return &lineageDB{cat: cat, raw: raw, su: su}
}

func (db *lineageDB) decide(t *testing.T, e *policy.Engine, group, sql string) schemas.DecisionReply {
	t.Helper()
	return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: []string{group}}, Resource: schemas.Resource{Name: "db", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: sql}}, Catalog: db.cat}, time.Now())
}

// masked is a masked result column as a test states it: position and method.
type masked map[int]string

func TestLineageMasking(t *testing.T) {
	db := startLineageDB(t)
	e, err := policy.Compile(lineagePolicies, 1)
	require.NoError(t, err)
	for _, tc := range []struct {
		sql  string
		want masked // nil: refused
		why  string // for a refusal: part of the reason
	}{
		{sql: "select id, name from customers", want: masked{}},
		{sql: "select card_number from customers", want: masked{0: "partial"}},
		{sql: "select * from customers", want: masked{2: "hmac", 3: "partial"}},
		{sql: "select c.*, o.item from customers c join orders o on o.customer_id = c.id", want: masked{2: "hmac", 3: "partial"}},
		// An alias column list renames; the source stays.
		{sql: "select cn::bytea, em::bytea from customers t(i,n,em,cn)", want: masked{0: "redact", 1: "redact"}},
		{sql: "select cn, em from customers t(i,n,em,cn)", want: masked{0: "partial", 1: "hmac"}},
		// Whole rows, and fields of them.
		{sql: "select c from customers c", want: masked{0: "redact"}},
		{sql: "select (c).card_number from customers c", want: masked{0: "redact"}},
		{sql: "select c::text from customers c", want: masked{0: "redact"}},
		{sql: "select row_to_json(c) from customers c", want: masked{0: "redact"}},
		{sql: "select card_number(c) from customers c", want: masked{0: "redact"}},
		{sql: "select (select c from customers c limit 1)", want: masked{0: "redact"}},
		// Transformations are masked whole (redacted: a token of a computed value would be
		// an oracle).
		{sql: "select '.' || card_number, card_number::numeric + 1, card_number::char(8), upper(email) from customers", want: masked{0: "redact", 1: "redact", 2: "redact", 3: "redact"}},
		{sql: "select max(card_number), string_agg(email, ',') from customers", want: masked{0: "redact", 1: "redact"}},
		{sql: "select case when card_number like '4%' then 'visa' end from customers", want: masked{0: "redact"}},
		// Subqueries, CTEs, set operations, LATERAL, views.
		{sql: "select x from (select card_number as x from customers) s", want: masked{0: "partial"}},
		{sql: "with k(x) as (select card_number from customers) select x, x || '' from k", want: masked{0: "partial", 1: "redact"}},
		{sql: "with recursive r(n, c) as (select 1, card_number from customers union all select n + 1, c from r where n < 2) select c from r", want: masked{0: "redact"}},
		{sql: "select id, name from customers union all select id, card_number from customers", want: masked{1: "redact"}},
		{sql: "select o.item, l.x from orders o, lateral (select c.card_number as x from customers c where c.id = o.customer_id) l", want: masked{1: "partial"}},
		{sql: "select cn, nm from customer_cards", want: masked{0: "partial"}},
		{sql: "select * from cards_of_cards", want: masked{0: "partial"}},
		{sql: "select * from customer_cards v(a, b, c)", want: masked{1: "partial"}},
		{sql: "select * from order_view", want: masked{}},
		{sql: "table customers", want: masked{2: "hmac", 3: "partial"}},
		{sql: "values ((select card_number from customers limit 1))", want: masked{0: "redact"}},
		{sql: "select id from customers_archive", want: masked{}},
		{sql: "select card_number from customers_archive", want: masked{0: "partial"}},     // a child's rows are the parent's: masked as the parent's column
		{sql: "select card_last4, id from customers_cards_gen", want: masked{0: "redact"}}, // a generated column computed from a masked one
		{sql: "select * from only customers", want: masked{2: "hmac", 3: "partial"}},
		{sql: "copy (select card_number from customers) to stdout", want: masked{0: "partial"}},
		{sql: "copy customers (id, email) to stdout", want: masked{1: "hmac"}},
		{sql: "select 1; select card_number from customers", want: masked{}}, // statement 0; statement 1 checked below
		{sql: "select id from customers where id = 1 order by name", want: masked{}},
		{sql: "select sum(distinct length(card_number)) from customers", want: masked{0: "redact"}},
		// A function the resource's owner vouches for is an expression like any other.
		{sql: "select shout(name), shout(card_number) from customers", want: masked{1: "redact"}},

		// Probing: a masked column anywhere but in a result.
		{sql: "select id from customers where card_number like '4111%'", why: "filter rows"},
		{sql: "select id from customers c join customers d using (card_number)", why: "join on it"},
		{sql: "select id from customers natural join customers", why: "join on it"},
		{sql: "select id, card_number from customers order by 2", why: "sort by it"},
		{sql: "select card_number x, id from customers order by x", why: "sort by it"},
		{sql: "select card_number, count(*) from customers group by 1", why: "group by it"},
		{sql: "select distinct on (card_number) id from customers", why: "sort by it"},
		{sql: "select distinct card_number from customers", why: "compare rows"},
		{sql: "select row_number() over (partition by card_number) from customers", why: "window"},
		{sql: "select id, card_number from customers union select 1, '4111111111111111' order by 2", why: "compare rows"},
		{sql: "select card_number from customers intersect select '4111111111111111'", why: "compare rows"},
		{sql: "select count(*) filter (where card_number > '4') from customers", why: "filter rows"},
		{sql: "select string_agg(name, ',' order by card_number) from customers", why: "sort by it"},
		{sql: "select * from customers c, generate_series(1, length(c.card_number))", why: "would reveal it row by row"},
		{sql: "select id from customers where exists (select 1 from customers d where d.card_number = '4111111111111111')", why: "filter rows"},
		{sql: "select id from probing_view", why: "filter rows"},
		{sql: "select i from customers t(i,n,e,c) where c = '1'", why: "filter rows"},
		{sql: "select pg_notify('x', card_number) from customers", why: "function"},
		{sql: "select id from customers limit (select length(card_number) from customers limit 1)", why: "filter rows"},
		// What cannot be traced is refused.
		{sql: "select * from leak()", why: "leak"},
		{sql: "select leak()", why: "function public.leak (sql, volatile)"},
		{sql: "select count(email) from customers", why: "pass it to a function"},
		{sql: "select count(name) from customers", why: "function public.count"},
		{sql: "select table_to_xml('customers', true, false, '')", why: "reads relations"},
		{sql: "select query_to_xml('select card_number from customers', true, false, '')", why: "reads relations"},
		{sql: "select * from nosuch", why: "not in the gateway's catalog"},
		{sql: "select * from notes", why: "several schemas (crm.notes, public.notes)"},
		{sql: "select most_common_vals from pg_stats", why: "other tables"},
		{sql: "select 1 === 1", why: "not built in"},
		// (expr).* is a column per field.
		{sql: "select (row(c.id, c.id, '.' || c.card_number, 0, null)::orders).* from customers c", want: masked{0: "redact", 1: "redact", 2: "redact", 3: "redact", 4: "redact"}},
		{sql: "select (c).* from customers c", want: masked{2: "hmac", 3: "partial"}},
		{sql: "select (c).* , 1 from customers c", want: masked{2: "hmac", 3: "partial"}},
		{sql: "select (row(c.id, c.card_number)).* from customers c", why: "expanded with .*"},
		// SEARCH and CYCLE compare their columns and add columns computed from them.
		{sql: "with recursive t(id, em) as (select id, email from customers union all select id, em from t where false) search depth first by em set ord select * from t", why: "sort by it"},
		{sql: "with recursive t(id, em) as (select id, email from customers union all select id, em from t where false) cycle em set is_cycle using path select * from t", why: "compare rows"},
		{sql: "with recursive t(id, em) as (select id, email from customers union all select id, em from t where false) search depth first by id set ord select * from t", want: masked{1: "redact"}},
		// A value that moves from column to column in a recursive CTE.
		{sql: "with recursive r(n, a, b, c) as (select 1, email || '', '', '' from customers union all select n + 1, c, a, b from r where n < 3) select n, c from r", want: masked{1: "redact"}},
		// ROWS FROM with a function whose columns are not declared: how many columns is not known.
		{sql: `select *, c.email || '' from customers c, rows from (generate_series(1, 1), json_to_record('{"a":1}') as (a int)) f`, why: "the columns of"},
		// A set-returning function in a select list filters (or multiplies) rows.
		{sql: "select id, regexp_matches(card_number, '^4') from customers", why: "filter rows"},
		{sql: "select id, generate_series(1, length(email)) from customers", why: "filter rows"},
		{sql: "select id, generate_series(1, 2) from customers", want: masked{}},
		// A sleep, a notification or a sequence given a masked value tells it.
		{sql: "select pg_sleep(case when card_number like '4%' then 0.2 else 0 end)::text from customers", why: "pass it to a function"},
		{sql: "copy (select id from customers) to '/tmp/gatehouse-copy-test'", why: "COPY TO the server file"},
		// Under WITH RECURSIVE a later CTE's name is the CTE, not the table.
		{sql: "with recursive a as (select id, item from orders), orders as (select id, '.' || card_number as item from customers) select * from a", why: "referred to before it is defined"},
		{sql: "with recursive a as (select * from b), b as (select card_number from customers) select * from a", why: "referred to before it is defined"},
		{sql: "copy (select id, card_number from customers) to stdout with (format csv)", why: "COPY in csv format"},
		{sql: "copy customers to stdout csv", why: "COPY in csv format"},
		{sql: "copy customers to stdout with (delimiter ',')", why: "COPY with delimiter"},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			d := db.decide(t, e, "readers", tc.sql)
			if tc.want == nil {
				require.Equal(t, schemas.EffectDeny, d.Effect, "%s: %s", d.Effect, d.Reason)
				require.Contains(t, d.Reason, tc.why)
				return
			}
			require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
			require.True(t, d.Mask.Planned)
			got := masked{}
			for _, o := range d.Mask.Outputs[0] {
				got[o.Column] = o.Method
			}
			require.Equal(t, tc.want, got)
			db.crossCheck(t, tc.sql, d)
		})
	}
	// The target of a write is the relation, whatever CTE has its name.
	d := db.decide(t, e, "editors", "with customers as (select 1 id, 'n' name, 'e' email, 'c' card_number) update customers set name = name where id = 1 returning card_number || '', email || ''")
	require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
	require.Len(t, d.Mask.Outputs[0], 2, "both results come from the real customers: %v", d.Mask.Outputs)
	d = db.decide(t, e, "editors", "with customers as (select 1 id) delete from customers where card_number like '4%' returning id")
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Contains(t, d.Reason, "filter rows")
	for _, sql := range []string{
		"alter table customers add column leak text generated always as (email) stored",
		"alter table customers alter column name type text using (name || card_number)",
		"create index on customers (card_number)",
		"create policy p on customers using (card_number like '4%')",
	} {
		d = db.decide(t, e, "editors", sql)
		require.Equal(t, schemas.EffectDeny, d.Effect, "%s: %s", sql, d.Reason)
		require.Contains(t, d.Reason, "write it elsewhere", sql)
	}
	d = db.decide(t, e, "editors", "prepare p as select email from customers; create table t as execute p")
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Contains(t, d.Reason, "CREATE TABLE AS EXECUTE")
	d = db.decide(t, e, "readers", "select 1; select card_number from customers")
	require.Len(t, d.Mask.Outputs, 2)
	require.Empty(t, d.Mask.Outputs[0])
	require.Len(t, d.Mask.Outputs[1], 1)
	require.Equal(t, "partial", d.Mask.Outputs[1][0].Method)
	require.Contains(t, d.Mask.Outputs[1][0].By, "public.customers.card_number", "its rows include those of the tables that inherit from it")
	d = db.decide(t, e, "readers", "select * from public.notes")
	require.Equal(t, schemas.EffectMask, d.Effect, d.Reason)
}

// crossCheck runs a statement on PostgreSQL and holds the plan to what the server says:
// as many result columns as the lineage has, and every column the server names as a bare
// table column masked as that column is.
func (db *lineageDB) crossCheck(t *testing.T, sql string, d schemas.DecisionReply) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, err := db.su.Exec(ctx, "BEGIN; "+sql+"; ROLLBACK").ReadAll()
	if err != nil && strings.Contains(sql, "copy") {
		return // COPY TO STDOUT is not read by Exec's ReadAll
	}
	require.NoError(t, err)
	outs := d.Mask.Outputs
	stmt := 0
	for _, r := range results[1 : len(results)-1] {
		if r.FieldDescriptions == nil {
			stmt++
			continue
		}
		require.Less(t, stmt, len(outs))
		for i, f := range r.FieldDescriptions {
			if f.TableOID == 0 || f.TableAttributeNumber == 0 { // an expression, or a whole row
				continue
			}
			src, ok := db.cat.Column(f.TableOID, int(f.TableAttributeNumber))
			require.True(t, ok, "column %d: table %d", i, f.TableOID)
			if src == "public.customers.card_number" || src == "public.customers.email" {
				require.True(t, slices.ContainsFunc(outs[stmt], func(o schemas.MaskedOutput) bool { return o.Column == i }),
					"PostgreSQL says column %d is %s, which the plan leaves unmasked: %v", i, src, outs[stmt])
			}
		}
		stmt++
	}
}

func TestLineageWrites(t *testing.T) {
	db := startLineageDB(t)
	e, err := policy.Compile(lineagePolicies, 1)
	require.NoError(t, err)
	for _, tc := range []struct {
		sql    string
		effect string
		writes []string // tables written, as table:action, at least
		code   string   // part of an unknown write
	}{
		{sql: "update orders set amount = 1 where id = 1", effect: "allow", writes: []string{"public.orders:update"}},
		{sql: "update customers set name = 'x' where id = 1", effect: "require_approval", writes: []string{"public.customers:update"}},
		{sql: "insert into customers (name, email, card_number) values ('a', 'b', 'c') on conflict (id) do update set name = excluded.name", effect: "require_approval",
			writes: []string{"public.customers:insert", "public.customers:update"}},
		{sql: "merge into customers c using orders o on o.customer_id = c.id when matched then update set name = 'x'", effect: "require_approval",
			writes: []string{"public.customers:update"}},
		{sql: "do $$ begin update customers set name = 'x'; end $$", effect: "require_approval", code: "DO block"},
		{sql: "update customer_cards set nm = 'x'", effect: "require_approval", writes: []string{"public.customer_cards:update", "public.customers:update"}},
		{sql: "select touch()", effect: "require_approval", code: "function public.touch (sql, volatile)"},
		{sql: "select * from calls_touch", effect: "require_approval", code: "function public.touch"},
		{sql: "alter table customers rename to c2", effect: "require_approval", writes: []string{"public.customers:alter"}},
		{sql: "update c2 set name = 'x'", effect: "require_approval", code: "not in the gateway's catalog"},
		{sql: "insert into shipments values (1, 1)", effect: "require_approval", code: "trigger ship on public.shipments"},
		{sql: "insert into notes values (1, 'x')", effect: "require_approval", code: "rules on public.notes"},
		{sql: "delete from customers_archive", effect: "require_approval", writes: []string{"public.customers_archive:delete", "public.customers:delete"}},
		{sql: "delete from customers where id = 9", effect: "require_approval", writes: []string{"public.customers:delete", "public.orders:update"}},
		{sql: "with d as (delete from customers where id = 9 returning id) select * from d", effect: "require_approval", writes: []string{"public.customers:delete"}},
		{sql: "explain analyze delete from customers", effect: "require_approval", writes: []string{"public.customers:delete"}},
		{sql: "truncate customers cascade", effect: "require_approval", writes: []string{"public.customers:truncate", "public.orders:truncate"}},
		{sql: "create table t2 as select * from customers", effect: "allow", writes: []string{"public.t2:create"}},
		{sql: "call nosuch()", effect: "require_approval", code: "procedure nosuch"},
		{sql: "copy orders to '/tmp/gatehouse-copy-test'", effect: "require_approval", code: "COPY TO the server file"},
		{sql: "delete from ca where id = 1", effect: "allow", writes: []string{"public.ca:delete", "public.cb:update"}}, // cascades that loop end
		{sql: "create temp table scratch (x int)", effect: "allow", writes: []string{"pg_temp.scratch:create"}},
		{sql: "select 1 into newtable", effect: "allow", writes: []string{"public.newtable:create"}},
		{sql: "select nextval('orders_id_seq')", effect: "allow"},
		// Code created in the same statement list runs what the catalog does not show.
		{sql: "create function g() returns int language sql as 'update customers set name = name returning 1'; select g()", effect: "require_approval", code: "function g, which the catalog does not know"},
		{sql: "create function f() returns trigger language plpgsql as $$ begin return new; end $$; create trigger t after update on orders for each row execute function f(); update orders set amount = amount where id = 1",
			effect: "require_approval", code: "after a schema change"},
		{sql: "select pg_temp.g()", effect: "require_approval", code: "function pg_temp.g"},
		// A schema's objects change with it.
		{sql: "alter schema public rename to pub2", effect: "require_approval", writes: []string{"public.customers:alter"}},
		{sql: "drop schema public cascade", effect: "require_approval", writes: []string{"public.customers:drop"}},
		{sql: "drop owned by current_user", effect: "require_approval", code: "DROP OWNED"},
		// What a schema change computes runs: its functions too.
		{sql: "alter table orders add column z int default touch()", effect: "require_approval", code: "function public.touch"},
		{sql: "alter table orders add constraint zz check (touch() > 0)", effect: "require_approval", code: "function public.touch"},
		{sql: "drop type if exists sometype cascade", effect: "require_approval", code: "CASCADE"},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			d := db.decide(t, e, "writers", tc.sql)
			require.Equal(t, tc.effect, d.Effect, d.Reason)
			info := policy.Analyze(tc.sql, policy.AnalyzeOptions{Catalog: db.cat})
			var got []string
			for _, w := range info.Writes {
				got = append(got, w.Table+":"+w.Action)
			}
			for _, w := range tc.writes {
				require.Contains(t, got, w)
			}
			if tc.code != "" {
				require.True(t, slices.ContainsFunc(info.UnknownWrites, func(c string) bool { return strings.Contains(c, tc.code) }),
					"unknown writes %v, want one with %q", info.UnknownWrites, tc.code)
			}
			require.False(t, info.ReadOnly)
		})
	}
	// After a schema change in the session's open transaction, a write reaches what the
	// catalog does not show.
	d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: []string{"writers"}}, Resource: schemas.Resource{Name: "db", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: "update orders set amount = 1 where id = 1", SchemaChanged: true}}, Catalog: db.cat}, time.Now())
	require.Equal(t, "require_approval", d.Effect, d.Reason)
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: []string{"readers"}}, Resource: schemas.Resource{Name: "db", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: "select * from customer_cards", SchemaChanged: true}}, Catalog: db.cat}, time.Now())
	require.Equal(t, "deny", d.Effect, d.Reason)
	require.Contains(t, d.Reason, "after a schema change")
	info := policy.Analyze("select 1 into newtable", policy.AnalyzeOptions{Catalog: db.cat})
	require.True(t, info.DDL, "SELECT INTO creates a table")
	require.Contains(t, info.Kinds, "select_into")
	// Reads stay reads.
	for _, sql := range []string{"select * from public.orders", "select * from customer_cards", "select now(), random()", "explain select * from customers", "select shout(name) from customers"} {
		info := policy.Analyze(sql, policy.AnalyzeOptions{Catalog: db.cat})
		require.True(t, info.ReadOnly, "%s: writes %v, code %v, functions %v", sql, info.Writes, info.UnknownWrites, info.WritingFuncs)
	}
}

func TestLexingSettingsAreRefused(t *testing.T) {
	db := startLineageDB(t)
	e, err := policy.Compile(lineagePolicies, 1)
	require.NoError(t, err)
	for sql, refused := range map[string]bool{
		"set client_encoding = 'SJIS'":                                  true,
		"set names 'BIG5'":                                              true,
		"SET LOCAL client_encoding TO gb18030":                          true,
		"set standard_conforming_strings = off":                         true,
		"set standard_conforming_strings to false":                      true,
		"select set_config('client_encoding', 'SJIS', false)":           true,
		"select set_config('standard_conforming_strings', 'off', true)": true,
		"select set_config(name, 'x', false) from pg_settings":          true,
		"set client_encoding = 'UTF8'":                                  false,
		"set names 'utf-8'":                                             false,
		"reset client_encoding":                                         false,
		"set standard_conforming_strings = on":                          false,
		"reset all":                                                     false,
		"set search_path = public":                                      false,
	} {
		d := db.decide(t, e, "writers", sql)
		if refused {
			require.Equal(t, schemas.EffectDeny, d.Effect, sql)
			require.Equal(t, "gatehouse", d.Policy, sql)
			require.False(t, d.Cacheable, "%s: a decision that depends on a literal is not shared", sql)
			continue
		}
		require.NotEqual(t, "gatehouse", d.Policy, "%s: %s", sql, d.Reason)
	}
	// Positional ORDER BY depends on a literal too.
	require.False(t, db.decide(t, e, "readers", "select id, name from customers order by 1").Cacheable)
	require.True(t, db.decide(t, e, "readers", "select id, name from customers order by id").Cacheable)
	require.Equal(t, fmt.Sprint(len(db.raw.Builtins["v"]) > 100), "true")
}
