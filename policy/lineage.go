package policy

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/gatehouse/gatehouse/services/pgtree"
)

// Lineage is what a statement does with data, resolved against the resource's catalog:
// where every result column comes from, where else each source column is used, what is
// written and how, and what runs that the analysis cannot see into. It is how masking
// holds by lineage rather than by the names in the SQL text: an alias, an alias column
// list, a whole-row reference, a subquery, a CTE, a set operation or a view does not hide
// a column's source.
type Lineage struct {
	// Outputs are the result columns of each top-level statement, in order (nil for a
	// statement that returns no rows).
	Outputs [][]Output `json:"outputs,omitempty"`
	// Opaque are the top-level statements whose rows come from a statement run by name
	// (EXECUTE, FETCH): their columns are those of what they run, which this analysis
	// does not see.
	Opaque []int `json:"opaque,omitempty"`
	// Uses are the source columns used other than as a result column, with how.
	Uses []ColumnUse `json:"uses,omitempty"`
	// Reads are the relations read (views and their base tables), qualified.
	Reads []string `json:"reads,omitempty"`
	// Writes are the relations written, through views resolved to their base tables.
	Writes []Write `json:"writes,omitempty"`
	// Code is what the statement may run that the analysis cannot see into (a DO block, a
	// procedure, a function that is not built in, a trigger, a rule): it may read or write
	// anything, or change session settings.
	Code []string `json:"code,omitempty"`
	// WritingFunctions are built-in functions called that change state (nextval, set_config,
	// lo_unlink, pg_notify, pg_terminate_backend, ...).
	WritingFunctions []string `json:"writing_functions,omitempty"`
	// Unresolved names what the analysis could not resolve (a relation or column missing
	// from the catalog, a function that reads relations by name): a statement that needs
	// its lineage (a masked one) is refused when this is not empty.
	Unresolved []string `json:"unresolved,omitempty"`
	// Functions are the functions called, by name.
	Functions []string `json:"functions,omitempty"`
	// NamedRelations and NamedFunctions are what the statement's text names, as written
	// (not what views it names read), and Missing the relations it names that the catalog
	// does not have: for the reason of a denial.
	NamedRelations []string `json:"-"`
	NamedFunctions []string `json:"-"`
	Missing        []string `json:"-"`
	// LiteralDependent: the analysis depends on a literal (ORDER BY 2, set_config's setting
	// name), so the decision must not be shared by statements that differ in literals.
	LiteralDependent bool `json:"-"`
	// Refusal, when set, refuses the statement whatever the rules say: it would change how
	// the server reads later statements (client_encoding, standard_conforming_strings).
	Refusal string `json:"-"`
}

// Output is one result column: the source columns its value is computed from, and whether
// it is one of them, unchanged (Bare: one column, or the same column of a table and of the
// tables that inherit from it).
type Output struct {
	Name    string   `json:"name"`
	Sources []string `json:"sources,omitempty"`
	Bare    bool     `json:"bare,omitempty"`
}

// ColumnUse is a source column used in some part of a statement other than its results.
type ColumnUse struct {
	Column string `json:"column"`
	How    string `json:"how"`
}

// Write is a relation a statement writes, and how: insert, update, delete, truncate, merge,
// copy_from, create, alter, drop, refresh.
type Write struct {
	Table  string `json:"table"`
	Action string `json:"action"`
	// Via says how a write reaches this table when the statement names another: "view
	// public.v", "inheritance from public.t", "cascade from public.t"; "" when it names it.
	Via string `json:"via,omitempty"`
}

// How a source column is used, when it is not a result column.
const (
	UseFilter   = "filter"   // WHERE, HAVING, JOIN ON, LIMIT, an aggregate's FILTER, a CASE reached from them
	UseJoin     = "join"     // USING, NATURAL
	UseSort     = "sort"     // ORDER BY (incl. by position or output name), DISTINCT ON, an aggregate's ORDER BY
	UseGroup    = "group"    // GROUP BY
	UseDistinct = "distinct" // DISTINCT, UNION, INTERSECT, EXCEPT: compared with other rows
	UseWindow   = "window"   // PARTITION BY, a window's ORDER BY
	UseWrite    = "write"    // a value written to a table (INSERT, UPDATE SET, CREATE TABLE AS, ...)
	UseCall     = "call"     // an argument of a function in FROM, or of one that has effects
)

// column is a column visible in a scope: its name and the source columns of its value.
type column struct {
	name string
	src  []string
	bare bool
}

// fromItem is an entry of a FROM clause: a relation, a subquery, a function, a join.
type fromItem struct {
	name    string   // alias, or the relation's name; "" when it has none
	schema  string   // a relation's schema, for schema.table.column references
	cols    []column // its columns in order
	unknown bool     // its columns are not known (a function without a column list, an unresolved relation)
	all     []string // the sources of any of its columns when unknown
	named   []*fromItem
}

type cte struct {
	name string
	cols []column
	done bool // its columns are known (a recursive CTE refers to itself before they are)
}

// scope is one query level: its FROM items and CTEs; parent is the enclosing query.
type scope struct {
	parent *scope
	items  []*fromItem
	ctes   []*cte
	// lateral: the items that a LATERAL item (or a function) in FROM may see.
	lateral []*fromItem
}

// maxDepth bounds the nesting of views and subqueries analysed.
const maxDepth = 64

type analyzer struct {
	cat   *Catalog
	depth int
	l     Lineage
	sets  sets               // indexes l's lists
	note  func(protoMessage) // hears of every statement node visited
	// changed: a statement before this one (in this list, or, as the proxy says, in the
	// session's open transaction) changed the schema: the catalog may no longer say what
	// a name stands for, what a write reaches, or what a function does.
	changed bool
	// work is what is left of the analysis's budget (nil: unbounded, for the catalog's
	// own views, which the database defined and which are analysed once).
	work *int
}

func newAnalyzer(c *Catalog) *analyzer { return &analyzer{cat: c} }

// maxWork bounds the steps of one statement's analysis: expressions and queries visited,
// names looked up, columns produced. A statement is analysed in time about linear in its
// size, but some shapes multiply (a FROM list of the same table a thousand times with a
// thousand stars, nested WITH RECURSIVE whose fixpoint rounds analyse their bodies again,
// thousands of CTEs in scope): past the budget (about a second) the statement is refused.
const maxWork = 20_000_000

// tooComplex unwinds an analysis that ran out of budget.
type tooComplex struct{}

// spend takes n steps from the budget.
func (a *analyzer) spend(n int) {
	if a.work == nil {
		return
	}
	if *a.work -= n; *a.work < 0 {
		panic(tooComplex{})
	}
}

func (a *analyzer) unresolved(format string, args ...any) {
	addUnique(&a.sets, &a.l.Unresolved, fmt.Sprintf(format, args...))
}

func (a *analyzer) code(format string, args ...any) {
	addUnique(&a.sets, &a.l.Code, fmt.Sprintf(format, args...))
}

func (a *analyzer) use(how string, src []string) {
	for _, s := range src {
		addUnique(&a.sets, &a.l.Uses, ColumnUse{Column: s, How: how})
	}
}

func (a *analyzer) read(qname string) {
	addUnique(&a.sets, &a.l.Reads, qname)
}

func (a *analyzer) write(qname, action string) { a.writeVia(qname, action, "") }

func (a *analyzer) writeVia(qname, action, via string) {
	addUnique(&a.sets, &a.l.Writes, Write{Table: qname, Action: action, Via: via})
}

// merge adds what another analysis found (a view's definition) to a's.
func (a *analyzer) merge(o *analyzer) {
	for _, u := range o.l.Uses {
		a.use(u.How, []string{u.Column})
	}
	for _, r := range o.l.Reads {
		a.read(r)
	}
	for _, w := range o.l.Writes {
		a.writeVia(w.Table, w.Action, w.Via)
	}
	for _, c := range o.l.Code {
		a.code("%s", c)
	}
	for _, u := range o.l.Unresolved {
		a.unresolved("%s", u)
	}
	for _, f := range o.l.WritingFunctions {
		addUnique(&a.sets, &a.l.WritingFunctions, f)
	}
	for _, f := range o.l.Functions {
		addUnique(&a.sets, &a.l.Functions, f)
	}
}

// Trace analyses every statement of a parse tree against the catalog.
func Trace(c *Catalog, tree *pg_query.ParseResult) *Lineage { return trace(c, tree, nil, false) }

// trace is Trace, calling note with every statement node it visits (nested ones too);
// changed says the schema has changed since the catalog was read.
func trace(c *Catalog, tree *pg_query.ParseResult, note func(protoMessage), changed bool) (lin *Lineage) {
	a := newAnalyzer(c)
	a.note = note
	work := maxWork
	a.work = &work
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(tooComplex); !ok {
				panic(r)
			}
			lin = &a.l
			lin.Refusal = fmt.Sprintf("the statement is too complex for the gateway to analyse (over %d steps: a FROM list, CTEs or recursive queries that multiply); refusing (fail closed)", maxWork)
		}
	}()
	for i, raw := range tree.Stmts {
		wasChanged := a.changed
		a.changed = changed
		a.l.Outputs = append(a.l.Outputs, a.statement(raw.Stmt, nil))
		changed = changed || a.changed || wasChanged
		switch raw.Stmt.GetNode().(type) {
		case *pg_query.Node_ExecuteStmt, *pg_query.Node_FetchStmt:
			a.l.Opaque = append(a.l.Opaque, i)
		}
	}
	return &a.l
}

// union returns the sources of several columns, without repeats.
func union(lists ...[]string) []string {
	var out []string
	var s sets
	for _, l := range lists {
		for _, x := range l {
			addUnique(&s, &out, x)
		}
	}
	return out
}

func allSources(cols []column) []string {
	var out []string
	for _, c := range cols {
		out = union(out, c.src)
	}
	return out
}

func strNode(n *pg_query.Node) (string, bool) {
	if s, ok := n.GetNode().(*pg_query.Node_String_); ok {
		return s.String_.Sval, true
	}
	return "", false
}

func names(nodes []*pg_query.Node) []string {
	var out []string
	for _, n := range nodes {
		if s, ok := strNode(n); ok {
			out = append(out, s)
		}
	}
	return out
}

// statement analyses one statement (a top-level one when sc is nil) and returns its
// result columns.
func (a *analyzer) statement(n *pg_query.Node, sc *scope) []Output {
	if n == nil {
		return nil
	}
	a.noteNode(n)
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxDepth {
		a.unresolved("statement nested deeper than %d levels", maxDepth)
		return nil
	}
	switch s := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		if s.SelectStmt.IntoClause != nil {
			// SELECT INTO makes a table of the results: nothing goes to the client.
			cols := a.selectStmt(s.SelectStmt, sc)
			a.use(UseWrite, allSources(cols))
			a.write(rangeVarName(a, s.SelectStmt.IntoClause.Rel), "create")
			return nil
		}
		return outputs(a.selectStmt(s.SelectStmt, sc))
	case *pg_query.Node_InsertStmt:
		return outputs(a.insertStmt(s.InsertStmt, sc))
	case *pg_query.Node_UpdateStmt:
		return outputs(a.updateStmt(s.UpdateStmt, sc))
	case *pg_query.Node_DeleteStmt:
		return outputs(a.deleteStmt(s.DeleteStmt, sc))
	case *pg_query.Node_MergeStmt:
		return outputs(a.mergeStmt(s.MergeStmt, sc))
	case *pg_query.Node_ExplainStmt:
		// EXPLAIN shows a plan, not values; EXPLAIN ANALYZE runs the statement, so its
		// writes and the way it uses columns count as the statement's own.
		a.statement(s.ExplainStmt.Query, sc)
		return []Output{{Name: "QUERY PLAN"}}
	case *pg_query.Node_CopyStmt:
		return a.copyStmt(s.CopyStmt)
	case *pg_query.Node_DeclareCursorStmt:
		// The cursor's rows come with FETCH, which takes these outputs (Resolve).
		return a.statement(s.DeclareCursorStmt.Query, sc)
	case *pg_query.Node_PrepareStmt:
		return a.statement(s.PrepareStmt.Query, sc)
	case *pg_query.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.Query.GetExecuteStmt() != nil {
			// CREATE TABLE ... AS EXECUTE: the rows are those of a prepared statement.
			a.unresolved("CREATE TABLE AS EXECUTE (the rows come from a statement prepared earlier)")
		}
		out := a.statement(s.CreateTableAsStmt.Query, sc)
		for _, o := range out {
			a.use(UseWrite, o.Sources)
		}
		if s.CreateTableAsStmt.Into != nil {
			a.write(rangeVarName(a, s.CreateTableAsStmt.Into.Rel), "create")
		}
		return nil
	case *pg_query.Node_ViewStmt:
		out := a.statement(s.ViewStmt.Query, sc)
		for _, o := range out {
			a.use(UseWrite, o.Sources)
		}
		a.write(rangeVarName(a, s.ViewStmt.View), "create")
		return nil
	case *pg_query.Node_DoStmt:
		a.code("DO block")
	case *pg_query.Node_CallStmt:
		if fc := s.CallStmt.Funccall; fc != nil {
			sch, name := funcName(fc.Funcname)
			a.code("procedure %s", qualify(sch, name))
			for _, arg := range fc.Args {
				a.use(UseCall, a.expr(arg, &scope{}))
			}
		}
	case *pg_query.Node_LoadStmt:
		a.code("LOAD %s", s.LoadStmt.Filename)
	case *pg_query.Node_CreateExtensionStmt:
		a.code("extension %s (its install script)", s.CreateExtensionStmt.Extname)
	case *pg_query.Node_AlterExtensionStmt:
		a.code("extension %s (its update script)", s.AlterExtensionStmt.Extname)
	case *pg_query.Node_TruncateStmt:
		for _, r := range s.TruncateStmt.Relations {
			if rv := r.GetRangeVar(); rv != nil {
				a.writeRelation(rv, "truncate", s.TruncateStmt.Behavior == pg_query.DropBehavior_DROP_CASCADE)
			}
		}
	case *pg_query.Node_RefreshMatViewStmt:
		a.writeRelation(s.RefreshMatViewStmt.Relation, "refresh", false)
	case *pg_query.Node_VariableSetStmt:
		a.setStmt(s.VariableSetStmt)
	case *pg_query.Node_ExecuteStmt:
		for _, p := range s.ExecuteStmt.Params {
			a.use(UseCall, a.expr(p, &scope{}))
		}
	case *pg_query.Node_TransactionStmt, *pg_query.Node_VariableShowStmt, *pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt,
		*pg_query.Node_NotifyStmt, *pg_query.Node_DiscardStmt, *pg_query.Node_DeallocateStmt, *pg_query.Node_FetchStmt,
		*pg_query.Node_ClosePortalStmt, *pg_query.Node_CheckPointStmt:
		// Neither a write nor a schema change.
	default:
		a.ddl(n)
	}
	return nil
}

func outputs(cols []column) []Output {
	out := make([]Output, len(cols))
	for i, c := range cols {
		out[i] = Output{Name: c.name, Sources: c.src, Bare: c.bare}
	}
	if out == nil {
		out = []Output{}
	}
	return out
}

// ddl records the relations a schema change names as altered (or dropped), as written:
// renaming, altering, dropping, indexing, adding triggers or rules to a table all change
// it.
func (a *analyzer) ddl(n *pg_query.Node) {
	a.ddlExpressions(n)
	a.changed = true
	if a.cat.src.EventTriggers {
		a.code("event triggers (they run on every schema change)")
	}
	action := "alter"
	switch v := n.Node.(type) {
	case *pg_query.Node_RenameStmt:
		if v.RenameStmt.RenameType == pg_query.ObjectType_OBJECT_SCHEMA {
			// Every relation of the schema changes its name (and leaves the policy's).
			a.writeSchema(v.RenameStmt.Subname, "alter")
			return
		}
	case *pg_query.Node_AlterOwnerStmt:
		if v.AlterOwnerStmt.ObjectType == pg_query.ObjectType_OBJECT_SCHEMA {
			if s, ok := strNode(v.AlterOwnerStmt.Object); ok {
				a.writeSchema(s, "alter")
			}
		}
	case *pg_query.Node_DropOwnedStmt:
		a.code("DROP OWNED (it drops every object the role owns)")
		return
	case *pg_query.Node_ReassignOwnedStmt:
		a.code("REASSIGN OWNED (it hands every object the role owns to another)")
		return
	}
	if d, ok := n.Node.(*pg_query.Node_DropStmt); ok {
		action = "drop"
		if d.DropStmt.Behavior == pg_query.DropBehavior_DROP_CASCADE {
			a.code("DROP ... CASCADE (what it drops with its objects is not seen)")
		}
		if d.DropStmt.RemoveType == pg_query.ObjectType_OBJECT_SCHEMA {
			for _, o := range d.DropStmt.Objects {
				if s, ok := strNode(o); ok {
					a.writeSchema(s, action)
				}
			}
			return
		}
		switch d.DropStmt.RemoveType {
		case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
			pg_query.ObjectType_OBJECT_FOREIGN_TABLE, pg_query.ObjectType_OBJECT_SEQUENCE, pg_query.ObjectType_OBJECT_INDEX:
			for _, o := range d.DropStmt.Objects {
				if l := o.GetList(); l != nil {
					parts := names(l.Items)
					switch len(parts) {
					case 1:
						a.writeNamed("", parts[0], action)
					case 2:
						a.writeNamed(parts[0], parts[1], action)
					case 3:
						a.writeNamed(parts[1], parts[2], action)
					}
				}
			}
		}
		return
	}
	var created *pg_query.RangeVar
	if cs, ok := n.Node.(*pg_query.Node_CreateStmt); ok {
		created = cs.CreateStmt.Relation
		a.write(rangeVarName(a, created), "create")
		action = "alter" // the tables it names otherwise (LIKE, INHERITS, REFERENCES) change too
	}
	pgtree.Walk(n.ProtoReflect(), func(m protoMessage) {
		switch v := m.Interface().(type) {
		case *pg_query.RangeVar:
			if v != created {
				a.writeNamed(v.Schemaname, v.Relname, action)
			}
		case *pg_query.Node:
		default:
			// Statements inside a schema change (a rule's actions) have kinds too.
			if a.note != nil && m != n.ProtoReflect() && strings.HasSuffix(string(m.Descriptor().Name()), "Stmt") {
				a.note(m)
			}
		}
	})
}

// noteNode tells note of a statement node (the message inside the Node wrapper).
func (a *analyzer) noteNode(n *pg_query.Node) {
	if a.note == nil || n.Node == nil {
		return
	}
	m := n.ProtoReflect()
	if f := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); f != nil {
		a.note(m.Get(f).Message())
	}
}

// ddlExpressions analyses the expressions inside a schema change: a default, a generated
// column, a check, a row-security policy, an index expression, a trigger's WHEN,
// ALTER COLUMN ... TYPE ... USING. They run on the table's rows (a masked column there is
// written elsewhere: a generated column copying it, say) and their functions run too.
func (a *analyzer) ddlExpressions(n *pg_query.Node) {
	var table *pg_query.RangeVar
	switch v := n.Node.(type) {
	case *pg_query.Node_AlterTableStmt:
		table = v.AlterTableStmt.Relation
	case *pg_query.Node_IndexStmt:
		table = v.IndexStmt.Relation
	case *pg_query.Node_CreatePolicyStmt:
		table = v.CreatePolicyStmt.Table
	case *pg_query.Node_AlterPolicyStmt:
		table = v.AlterPolicyStmt.Table
	case *pg_query.Node_CreateTrigStmt:
		table = v.CreateTrigStmt.Relation
	case *pg_query.Node_CreateStmt, *pg_query.Node_CreateDomainStmt, *pg_query.Node_AlterDomainStmt:
	default:
		return
	}
	sc := &scope{}
	if table != nil {
		if it := a.relation(table, sc, false); it != nil {
			sc.items = []*fromItem{it}
		}
	}
	a.use(UseWrite, a.children(n.ProtoReflect(), sc))
	// Index columns are named, not referenced.
	pgtree.Walk(n.ProtoReflect(), func(m protoMessage) {
		if ie, ok := m.Interface().(*pg_query.IndexElem); ok && ie.Name != "" {
			if src, ok := a.lookupColumn(ie.Name, sc); ok {
				a.use(UseWrite, src)
			}
		}
	})
}

// writeSchema records a write of every relation of a schema.
func (a *analyzer) writeSchema(schema, action string) {
	for _, r := range a.cat.byQName {
		if r.Schema == schema {
			a.writeVia(r.qname, action, "schema "+schema)
		}
	}
}

// writeNamed records a write of the relation a name stands for (every relation it can
// stand for; as written when the catalog has none).
func (a *analyzer) writeNamed(schema, name, action string) {
	rels := a.cat.lookup(schema, name)
	a.named(schema, name, len(rels) > 0)
	if len(rels) == 0 {
		a.write(qualify(orPublic(schema), name), action)
		return
	}
	for _, r := range rels {
		a.write(r.qname, action)
	}
}

// named notes a relation the statement names, as written, and whether the catalog has it.
func (a *analyzer) named(schema, name string, found bool) {
	addUnique(&a.sets, &a.l.NamedRelations, qualify(schema, name))
	if !found {
		addUnique(&a.sets, &a.l.Missing, qualify(schema, name))
	}
}

func orPublic(s string) string {
	if s == "" {
		return "public"
	}
	return s
}

func qualify(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

// rangeVarName is the qualified name of a relation to be created.
func rangeVarName(a *analyzer, rv *pg_query.RangeVar) string {
	if rv == nil {
		return ""
	}
	if rv.Relpersistence == "t" || rv.Schemaname == "pg_temp" {
		return "pg_temp." + rv.Relname
	}
	return qualify(orPublic(rv.Schemaname), rv.Relname)
}
