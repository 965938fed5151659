package policy

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type protoMessage = protoreflect.Message

// expr returns the source columns an expression's value is computed from, recording what
// it does on the way (subqueries, functions with effects, uses inside aggregates and
// windows).
func (a *analyzer) expr(n *pg_query.Node, sc *scope) []string {
	a.spend(1)
	if n == nil || n.Node == nil {
		return nil
	}
	switch v := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		src, _ := a.columnRef(v.ColumnRef, sc)
		return src
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef, *pg_query.Node_SqlvalueFunction, *pg_query.Node_String_,
		*pg_query.Node_Integer, *pg_query.Node_Float, *pg_query.Node_Boolean, *pg_query.Node_AStar:
		return nil
	case *pg_query.Node_FuncCall:
		return a.funcCall(v.FuncCall, sc)
	case *pg_query.Node_SubLink:
		sl := v.SubLink
		a.operatorName(sl.OperName)
		return union(allSources(a.query(sl.Subselect, sc)), a.expr(sl.Testexpr, sc))
	case *pg_query.Node_TypeCast:
		a.typeName(v.TypeCast.TypeName)
		return a.expr(v.TypeCast.Arg, sc)
	case *pg_query.Node_AExpr:
		a.operatorName(v.AExpr.Name)
		return union(a.expr(v.AExpr.Lexpr, sc), a.expr(v.AExpr.Rexpr, sc))
	case *pg_query.Node_SelectStmt:
		// A bare subquery in an expression position (inside a list the parser built).
		return allSources(a.query(n, sc))
	// The common kinds, without reflection.
	case *pg_query.Node_BoolExpr:
		return a.exprs(v.BoolExpr.Args, sc)
	case *pg_query.Node_NullTest:
		return a.expr(v.NullTest.Arg, sc)
	case *pg_query.Node_BooleanTest:
		return a.expr(v.BooleanTest.Arg, sc)
	case *pg_query.Node_CoalesceExpr:
		return a.exprs(v.CoalesceExpr.Args, sc)
	case *pg_query.Node_MinMaxExpr:
		return a.exprs(v.MinMaxExpr.Args, sc)
	case *pg_query.Node_RowExpr:
		return a.exprs(v.RowExpr.Args, sc)
	case *pg_query.Node_AArrayExpr:
		return a.exprs(v.AArrayExpr.Elements, sc)
	case *pg_query.Node_List:
		return a.exprs(v.List.Items, sc)
	case *pg_query.Node_CollateClause:
		return a.expr(v.CollateClause.Arg, sc)
	case *pg_query.Node_NamedArgExpr:
		return a.expr(v.NamedArgExpr.Arg, sc)
	case *pg_query.Node_CaseExpr:
		src := union(a.expr(v.CaseExpr.Arg, sc), a.expr(v.CaseExpr.Defresult, sc))
		for _, w := range v.CaseExpr.Args {
			if cw := w.GetCaseWhen(); cw != nil {
				src = union(src, a.expr(cw.Expr, sc), a.expr(cw.Result, sc))
			} else {
				src = union(src, a.expr(w, sc))
			}
		}
		return src
	case *pg_query.Node_AIndirection:
		return union(a.expr(v.AIndirection.Arg, sc), a.exprs(v.AIndirection.Indirection, sc))
	case *pg_query.Node_AIndices:
		return union(a.expr(v.AIndices.Lidx, sc), a.expr(v.AIndices.Uidx, sc))
	}
	return a.children(n.ProtoReflect(), sc)
}

func (a *analyzer) exprs(list []*pg_query.Node, sc *scope) []string {
	var src []string
	for _, n := range list {
		src = union(src, a.expr(n, sc))
	}
	return src
}

// exprBare is expr, and whether the expression is a bare reference to one column whose
// value is one source column unchanged.
func (a *analyzer) exprBare(n *pg_query.Node, sc *scope) ([]string, bool) {
	if cr := n.GetColumnRef(); cr != nil {
		return a.columnRef(cr, sc)
	}
	return a.expr(n, sc), false
}

// children returns the sources of every expression inside m (any node kind the analysis
// does not know by name: they all compute from what they contain).
func (a *analyzer) children(m protoMessage, sc *scope) []string {
	var out []string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		visit := func(sub protoreflect.Message) {
			if n, ok := sub.Interface().(*pg_query.Node); ok {
				out = union(out, a.expr(n, sc))
				return
			}
			switch x := sub.Interface().(type) {
			case *pg_query.TypeName:
				a.typeName(x)
				return
			case *pg_query.WindowDef:
				a.window(x, sc, nil)
				return
			case *pg_query.SelectStmt:
				out = union(out, allSources(a.selectStmt(x, sc)))
				return
			}
			out = union(out, a.children(sub, sc))
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			visit(v.Message())
		}
		return true
	})
	return out
}

// columnRef resolves a column reference as PostgreSQL does: the nearest query level that
// has a column of that name (or, for a.b, a FROM item a), else a whole-row reference to a
// FROM item of that name. It returns the sources and whether the value is one source
// column unchanged.
func (a *analyzer) columnRef(cr *pg_query.ColumnRef, sc *scope) ([]string, bool) {
	parts := names(cr.Fields)
	star := len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
	switch {
	case star:
		return allSources(a.star(parts, sc)), false
	case len(parts) == 0:
		a.unresolved("a column reference")
		return nil, false
	case len(parts) == 1:
		name := parts[0]
		cols, known := a.columnsNamed(name, sc)
		if known && len(cols) == 1 {
			return cols[0].src, cols[0].bare
		}
		src := allSources(cols)
		if !known {
			// A whole row: every column of the item, as one composite value. (With a FROM
			// item of unknown columns in reach, the name may be either.)
			if it := a.findItem(parts, sc); it != nil {
				if it.unknown {
					return union(src, it.all), false
				}
				return union(src, allSources(it.cols)), false
			}
			if len(cols) == 0 {
				a.unresolved("column %s", name)
			}
		}
		return src, false
	}
	// rel.col, schema.rel.col, db.schema.rel.col; or col.field of a composite column.
	col := parts[len(parts)-1]
	if it := a.findItem(parts[:len(parts)-1], sc); it != nil {
		if c, ok := findColumn(it, col); ok {
			return c.src, c.bare
		}
		// rel.field of a whole row? PostgreSQL says the column does not exist.
		a.unresolved("column %s", joinDots(parts))
		return allSources(it.cols), false
	}
	if cols, _ := a.columnsNamed(parts[0], sc); len(cols) > 0 {
		return allSources(cols), false // a field of a composite column
	}
	a.unresolved("column %s", joinDots(parts))
	return nil, false
}

// lookupColumn resolves an unqualified column name, reporting whether it resolved.
func (a *analyzer) lookupColumn(name string, sc *scope) ([]string, bool) {
	cols, _ := a.columnsNamed(name, sc)
	return allSources(cols), len(cols) > 0
}

// columnsNamed finds the columns an unqualified name can stand for: those of the nearest
// query level that has a known column of that name (known reports one was found). FROM
// items whose columns are unknown (functions) may have it too: their sources are added on
// the way, since the name may stand for their column instead.
func (a *analyzer) columnsNamed(name string, sc *scope) (found []column, known bool) {
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			a.spend(1 + len(it.cols))
			for _, c := range it.cols {
				if c.name == name {
					found = append(found, c)
					known = true
				}
			}
			if it.unknown {
				found = append(found, column{name: name, src: it.all})
			}
		}
		if known {
			return found, true
		}
	}
	return found, false
}

// findItem finds the FROM item a qualifier names (alias or relation name, optionally with
// its schema), at the nearest query level that has it.
func (a *analyzer) findItem(qual []string, sc *scope) *fromItem {
	if len(qual) == 0 {
		return nil
	}
	name := qual[len(qual)-1]
	schema := ""
	if len(qual) >= 2 {
		schema = qual[len(qual)-2]
	}
	for s := sc; s != nil; s = s.parent {
		for _, top := range s.items {
			a.spend(1 + len(top.named))
			for _, it := range top.named {
				if it.name == name && (schema == "" || it.schema == schema || (it.schema == "" && schema == "public")) {
					return it
				}
			}
		}
	}
	return nil
}

// funcName splits a function's name into schema and name.
func funcName(parts []*pg_query.Node) (string, string) {
	p := names(parts)
	switch len(p) {
	case 0:
		return "", ""
	case 1:
		return "", p[0]
	}
	return p[len(p)-2], p[len(p)-1]
}

// funcCall analyses a function call: its arguments (used as arguments when the function
// has effects), an aggregate's ORDER BY and FILTER, a window's OVER, and what the function
// is.
func (a *analyzer) funcCall(fc *pg_query.FuncCall, sc *scope) []string {
	schema, name := funcName(fc.Funcname)
	if src, ok := a.fieldSelection(fc, schema, name, sc); ok {
		return src
	}
	addUnique(&a.sets, &a.l.Functions, name)
	addUnique(&a.sets, &a.l.NamedFunctions, qualify(schema, name))
	var src []string
	for _, arg := range fc.Args {
		src = union(src, a.expr(arg, sc))
	}
	for _, o := range fc.AggOrder {
		if sb := o.GetSortBy(); sb != nil {
			a.operatorName(sb.UseOp)
			a.use(UseSort, a.expr(sb.Node, sc))
		} else {
			a.use(UseSort, a.expr(o, sc))
		}
	}
	a.use(UseFilter, a.expr(fc.AggFilter, sc))
	if fc.Over != nil {
		a.window(fc.Over, sc, nil)
	}
	if a.classify(schema, name, fc) {
		// A function with effects: what it is given may end up elsewhere (a sequence, a
		// setting, a notification, a large object, another session).
		a.use(UseCall, src)
	}
	if a.cat.setReturn[name] {
		// A set-returning function gives as many rows as its arguments make it (none for
		// regexp_matches(card_number, '^4') when the card does not start with 4): it
		// filters rows.
		a.use(UseFilter, src)
	}
	return src
}

// fieldSelection resolves col(t), PostgreSQL's functional notation for t.col, which it
// takes when no function of that name exists and the one argument is a row with such a
// column.
func (a *analyzer) fieldSelection(fc *pg_query.FuncCall, schema, name string, sc *scope) ([]string, bool) {
	if len(fc.Args) != 1 || schema != "" || fc.AggStar || fc.Over != nil || len(a.cat.functions[name]) > 0 || a.cat.builtin[name] {
		return nil, false
	}
	cr := fc.Args[0].GetColumnRef()
	if cr == nil {
		return nil, false
	}
	p := names(cr.Fields)
	if len(p) != len(cr.Fields) || len(p) == 0 {
		return nil, false
	}
	if _, known := a.columnsNamed(p[len(p)-1], sc); known && len(p) == 1 {
		return nil, false // a column of composite type: not traced here
	}
	it := a.findItem(p, sc)
	if it == nil {
		return nil, false
	}
	c, ok := findColumn(it, name)
	return c.src, ok
}

// readsByName are built-in functions that read relations or run SQL named in their
// arguments: what they read cannot be traced. The volatile ones can write too.
var readsByName = map[string]bool{
	"query_to_xml": true, "query_to_xmlschema": true, "query_to_xml_and_xmlschema": true,
	"table_to_xml": true, "table_to_xmlschema": true, "table_to_xml_and_xmlschema": true,
	"cursor_to_xml": true, "cursor_to_xmlschema": true,
	"schema_to_xml": true, "schema_to_xmlschema": true, "schema_to_xml_and_xmlschema": true,
	"database_to_xml": true, "database_to_xmlschema": true, "database_to_xml_and_xmlschema": true,
	"ts_stat": true, "ts_rewrite": true, "pg_read_file": true, "pg_read_binary_file": true,
	"lo_get": true, "loread": true, "lo_export": true,
	"pg_logical_slot_get_changes": true, "pg_logical_slot_peek_changes": true,
	"pg_logical_slot_get_binary_changes": true, "pg_logical_slot_peek_binary_changes": true,
}

// harmlessVolatile are built-in volatile functions that change nothing another statement
// or session could see. (pg_sleep is not: a sleep that depends on a masked value tells it.)
var harmlessVolatile = map[string]bool{
	"random": true, "random_normal": true, "gen_random_uuid": true, "clock_timestamp": true, "timeofday": true,
	"currval": true, "lastval": true,
	"pg_stat_clear_snapshot": true, "txid_current_if_assigned": true, "pg_current_xact_id_if_assigned": true,
	"pg_backend_pid": true, "inet_client_addr": true, "now": true, "statement_timestamp": true, "transaction_timestamp": true,
}

// classify records what the function a call names is, and reports whether it has effects
// (its arguments may be kept or sent somewhere). A name that could resolve to a function
// that is not built in (any schema: the search_path can change) runs code the analysis
// cannot see into.
func (a *analyzer) classify(schema, name string, fc *pg_query.FuncCall) bool {
	effects := false
	if len(a.cat.functions[name]) == 0 && !a.cat.builtin[name] {
		// Neither built in nor in the catalog: created since it was read (in this statement
		// list, or this transaction), or the server does not have it.
		a.code("function %s, which the catalog does not know (created since it was read?)", qualify(schema, name))
		a.unresolved("function %s, which the catalog does not know", qualify(schema, name))
		return true
	}
	for _, f := range a.cat.functions[name] {
		if (schema != "" && schema != f.Schema) || a.cat.trusted[f.Schema+"."+f.Name] {
			continue
		}
		a.code("function %s.%s (%s, %s)", f.Schema, f.Name, f.Language, volatilityName(f.Volatility))
		effects = true
	}
	if schema != "" && schema != "pg_catalog" {
		return effects // not a built-in one
	}
	if name == "set_config" {
		a.setConfig(fc)
		addUnique(&a.sets, &a.l.WritingFunctions, name)
		return true
	}
	if readsByName[name] {
		a.unresolved("function %s, which reads relations or runs SQL named in its arguments", name)
		if a.cat.volatile[name] {
			a.code("SQL run by %s", name)
		}
		return true
	}
	if a.cat.volatile[name] && !harmlessVolatile[name] {
		addUnique(&a.sets, &a.l.WritingFunctions, name)
		return true
	}
	return effects
}

func volatilityName(v string) string {
	switch v {
	case "i":
		return "immutable"
	case "s":
		return "stable"
	}
	return "volatile"
}

// setConfig refuses set_config of a lexing setting, or of a setting whose name the
// statement computes.
func (a *analyzer) setConfig(fc *pg_query.FuncCall) {
	a.l.LiteralDependent = true
	if len(fc.Args) < 2 {
		return
	}
	name := strings.ToLower(constString(fc.Args[0]))
	if name == "" {
		a.l.Refusal = "set_config with a setting name computed when it runs is refused: the gateway could not tell whether it changes how later statements are read (client_encoding, standard_conforming_strings)"
		return
	}
	if why, ok := lexingSettings[name]; ok {
		if v := constString(fc.Args[1]); v == "" || !pinnedValue(name, v) {
			a.l.Refusal = "Gatehouse pins " + name + " for the session (" + pinned[name] + "): changing it is refused, since " + why
		}
	}
}

// operatorName notes an operator that is not built in: using it runs its function.
func (a *analyzer) operatorName(parts []*pg_query.Node) {
	p := names(parts)
	if len(p) == 0 {
		return
	}
	if op := p[len(p)-1]; a.cat.operators[op] {
		a.code("operator %s (not built in)", op)
		a.unresolved("operator %s, whose function is not built in", op)
	}
}

// typeName notes a cast to a type whose casts or input run code that is not built in.
func (a *analyzer) typeName(tn *pg_query.TypeName) {
	if tn == nil {
		return
	}
	p := names(tn.Names)
	if len(p) == 0 {
		return
	}
	if a.cat.types[joinDots(p)] || a.cat.types[p[len(p)-1]] {
		a.code("cast to %s (not built in)", joinDots(p))
		a.unresolved("cast to %s, which runs a function that is not built in", joinDots(p))
	}
}
