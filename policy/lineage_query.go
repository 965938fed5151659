package policy

import (
	"slices"
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// query analyses a statement that yields rows inside another (a subquery, a CTE, a FROM
// item, a view) and returns its columns.
func (a *analyzer) query(n *pg_query.Node, parent *scope) []column {
	if n == nil {
		return nil
	}
	a.spend(1)
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxDepth {
		a.unresolved("query nested deeper than %d levels", maxDepth)
		return nil
	}
	a.noteNode(n)
	switch s := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		return a.selectStmt(s.SelectStmt, parent)
	case *pg_query.Node_InsertStmt:
		return a.insertStmt(s.InsertStmt, parent)
	case *pg_query.Node_UpdateStmt:
		return a.updateStmt(s.UpdateStmt, parent)
	case *pg_query.Node_DeleteStmt:
		return a.deleteStmt(s.DeleteStmt, parent)
	case *pg_query.Node_MergeStmt:
		return a.mergeStmt(s.MergeStmt, parent)
	}
	a.unresolved("a %s where rows were expected", nodeName(n))
	return nil
}

func nodeName(n *pg_query.Node) string {
	if n == nil || n.Node == nil {
		return "nothing"
	}
	return string(n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().Get(0)).Message().Name())
}

// selectStmt analyses a SELECT (or VALUES, or a set operation) and returns its columns.
func (a *analyzer) selectStmt(s *pg_query.SelectStmt, parent *scope) []column {
	if s == nil {
		return nil
	}
	sc := &scope{parent: parent}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	var cols []column
	switch {
	case s.Op != pg_query.SetOperation_SETOP_NONE && s.Op != pg_query.SetOperation_SET_OPERATION_UNDEFINED:
		l := a.selectStmt(s.Larg, sc)
		r := a.selectStmt(s.Rarg, sc)
		cols = make([]column, max(len(l), len(r)))
		for i := range cols {
			if i < len(l) {
				cols[i].name = l[i].name
				cols[i].src = l[i].src
			}
			if i < len(r) {
				cols[i].src = union(cols[i].src, r[i].src)
			}
		}
		// UNION removes duplicates and INTERSECT and EXCEPT compare rows: a row count then
		// says whether a guessed value is there.
		if !s.All || s.Op != pg_query.SetOperation_SETOP_UNION {
			a.use(UseDistinct, allSources(cols))
		}
	case len(s.ValuesLists) > 0:
		for _, row := range s.ValuesLists {
			items := row.GetList().GetItems()
			if len(cols) < len(items) {
				cols = append(cols, make([]column, len(items)-len(cols))...)
			}
			for i, it := range items {
				cols[i].src = union(cols[i].src, a.expr(it, sc))
			}
		}
		for i := range cols {
			cols[i].name = "column" + itoa(i+1)
		}
	default:
		a.from(s.FromClause, sc)
		cols = a.targets(s.TargetList, sc)
		a.use(UseFilter, a.expr(s.WhereClause, sc))
		a.use(UseFilter, a.expr(s.HavingClause, sc))
		a.ordering(s.GroupClause, sc, cols, UseGroup)
		for _, w := range s.WindowClause {
			a.window(w.GetWindowDef(), sc, cols)
		}
		if len(s.DistinctClause) > 0 {
			if len(s.DistinctClause) == 1 && s.DistinctClause[0].GetNode() == nil {
				a.use(UseDistinct, allSources(cols))
			} else {
				a.ordering(s.DistinctClause, sc, cols, UseSort)
			}
		}
	}
	a.ordering(s.SortClause, sc, cols, UseSort)
	a.use(UseFilter, a.expr(s.LimitCount, sc))
	a.use(UseFilter, a.expr(s.LimitOffset, sc))
	return cols
}

func itoa(i int) string { return strconv.Itoa(i) }

// with analyses the CTEs of a WITH clause into sc, each visible to the ones after it. WITH
// RECURSIVE makes every CTE of the clause visible to every one, itself and later ones
// included: a name there never stands for a table of that name.
func (a *analyzer) with(w *pg_query.WithClause, sc *scope) {
	var ctes []*pg_query.CommonTableExpr
	for _, n := range w.Ctes {
		if ce := n.GetCommonTableExpr(); ce != nil {
			ctes = append(ctes, ce)
		}
	}
	if !w.Recursive {
		for _, ce := range ctes {
			c := &cte{name: ce.Ctename, done: true}
			c.cols = rename(a.query(ce.Ctequery, sc), names(ce.Aliascolnames))
			sc.ctes = append(sc.ctes, c)
		}
		return
	}
	placeholders := make([]*cte, len(ctes))
	for i, ce := range ctes {
		placeholders[i] = &cte{name: ce.Ctename}
		sc.ctes = append(sc.ctes, placeholders[i])
	}
	for i, ce := range ctes {
		c := placeholders[i]
		aliases := names(ce.Aliascolnames)
		sel := ce.Ctequery.GetSelectStmt()
		if sel == nil || sel.Op == pg_query.SetOperation_SETOP_NONE || sel.Op == pg_query.SetOperation_SET_OPERATION_UNDEFINED || sel.Larg == nil {
			c.cols, c.done = rename(a.query(ce.Ctequery, sc), aliases), true
			a.searchCycle(ce, c)
			continue
		}
		// The recursive term refers to the CTE: its columns start as the non-recursive
		// term's and take in what each iteration adds (a value can move from column to
		// column), until nothing changes.
		c.cols, c.done = rename(a.selectStmt(sel.Larg, sc), aliases), true
		for round := 0; ; round++ {
			if round == maxDepth {
				a.unresolved("recursive CTE %s, whose columns' sources do not settle", c.name)
				break
			}
			cols := rename(a.query(ce.Ctequery, sc), aliases)
			changed := false
			for j := range cols {
				if j < len(c.cols) {
					before := len(c.cols[j].src)
					c.cols[j].src = union(c.cols[j].src, cols[j].src)
					c.cols[j].bare = false
					changed = changed || len(c.cols[j].src) != before
				}
			}
			if !changed {
				break
			}
		}
		a.searchCycle(ce, c)
	}
}

// searchCycle adds the columns a SEARCH or CYCLE clause adds to a recursive CTE (computed
// from the columns it names, which it compares).
func (a *analyzer) searchCycle(ce *pg_query.CommonTableExpr, c *cte) {
	named := func(list []*pg_query.Node) []string {
		var src []string
		for _, n := range names(list) {
			for _, col := range c.cols {
				if col.name == n {
					src = union(src, col.src)
				}
			}
		}
		return src
	}
	if s := ce.SearchClause; s != nil {
		src := named(s.SearchColList)
		a.use(UseSort, src)
		c.cols = append(c.cols, column{name: s.SearchSeqColumn, src: src})
	}
	if cy := ce.CycleClause; cy != nil {
		src := named(cy.CycleColList)
		a.use(UseDistinct, src)
		c.cols = append(c.cols, column{name: cy.CycleMarkColumn, src: src}, column{name: cy.CyclePathColumn, src: src})
	}
}

// rename gives the first columns the names of an alias column list.
func rename(cols []column, aliases []string) []column {
	if len(aliases) == 0 {
		return cols
	}
	out := slices.Clone(cols)
	for i, n := range aliases {
		if i < len(out) {
			out[i].name = n
		}
	}
	return out
}

// targets analyses a target list (expanding * and t.*) into result columns.
func (a *analyzer) targets(list []*pg_query.Node, sc *scope) []column {
	var cols []column
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil || rt.Val == nil {
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && len(cr.Fields) > 0 {
			if _, star := cr.Fields[len(cr.Fields)-1].Node.(*pg_query.Node_AStar); star {
				cols = append(cols, a.star(names(cr.Fields), sc)...)
				continue
			}
		}
		if ind := rt.Val.GetAIndirection(); ind != nil && len(ind.Indirection) > 0 && ind.Indirection[len(ind.Indirection)-1].GetAStar() != nil {
			cols = append(cols, a.compositeStar(ind, sc)...)
			continue
		}
		src, bare := a.exprBare(rt.Val, sc)
		name := rt.Name
		if name == "" {
			name = outputName(rt.Val)
		}
		cols = append(cols, column{name: name, src: src, bare: bare})
	}
	return cols
}

// compositeStar expands (expr).*: one result column per field of a composite value. Its
// fields are known when expr is a whole row of a FROM item, or a cast to a relation's row
// type; otherwise how many columns come back is not known, which is unresolved.
func (a *analyzer) compositeStar(ind *pg_query.A_Indirection, sc *scope) []column {
	src := a.expr(ind.Arg, sc)
	for _, n := range ind.Indirection[:len(ind.Indirection)-1] {
		src = union(src, a.expr(n, sc))
	}
	if len(ind.Indirection) == 1 {
		if cr := ind.Arg.GetColumnRef(); cr != nil {
			if p := names(cr.Fields); len(p) == len(cr.Fields) && len(p) > 0 {
				if _, known := a.columnsNamed(p[len(p)-1], sc); !known || len(p) > 1 {
					if it := a.findItem(p, sc); it != nil && !it.unknown {
						return it.cols // (t).* is t.*
					}
				}
			}
		}
		if tc := ind.Arg.GetTypeCast(); tc != nil && tc.TypeName != nil {
			if p := names(tc.TypeName.Names); len(p) > 0 && len(tc.TypeName.ArrayBounds) == 0 {
				schema := ""
				if len(p) > 1 {
					schema = p[len(p)-2]
				}
				if rels := a.cat.lookup(schema, p[len(p)-1]); len(rels) == 1 {
					var cols []column
					for _, name := range rels[0].Columns {
						if name != "" {
							cols = append(cols, column{name: name, src: src})
						}
					}
					return cols
				}
			}
		}
	}
	a.unresolved("the fields of a composite value expanded with .*")
	return []column{{name: "?column?", src: src}}
}

// star expands * (every column of the FROM clause) or t.* (every column of t).
// columnCost is what a column produced costs of the analysis's budget.
const columnCost = 10

func (a *analyzer) star(qual []string, sc *scope) []column {
	if len(qual) == 0 {
		var cols []column
		for _, it := range sc.items {
			// Before copying: columns cost memory (a thousand stars over a thousand tables
			// are millions of them).
			a.spend(1 + columnCost*len(it.cols))
			cols = append(cols, a.itemColumns(it)...)
		}
		return cols
	}
	if it := a.findItem(qual, sc); it != nil {
		return a.itemColumns(it)
	}
	a.unresolved("relation %s in %s.*", joinDots(qual), joinDots(qual))
	return nil
}

// itemColumns are the columns of a FROM item; one column of unknown name for an item whose
// columns are unknown.
func (a *analyzer) itemColumns(it *fromItem) []column {
	if it.unknown {
		a.unresolved("the columns of %s", orName(it.name))
		return []column{{name: it.name, src: it.all}}
	}
	return it.cols
}

func orName(s string) string {
	if s == "" {
		return "a FROM item without a name"
	}
	return s
}

func joinDots(parts []string) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += "."
		}
		s += p
	}
	return s
}

// outputName is the name PostgreSQL gives a result column without an alias (roughly: it
// matters only for ORDER BY and GROUP BY by output name, which are resolved both ways).
func outputName(n *pg_query.Node) string {
	switch v := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		if p := names(v.ColumnRef.Fields); len(p) > 0 {
			return p[len(p)-1]
		}
	case *pg_query.Node_FuncCall:
		_, name := funcName(v.FuncCall.Funcname)
		return name
	case *pg_query.Node_TypeCast:
		if v.TypeCast.Arg != nil {
			if name := outputName(v.TypeCast.Arg); name != "?column?" {
				return name
			}
		}
		if tn := v.TypeCast.TypeName; tn != nil {
			if p := names(tn.Names); len(p) > 0 {
				return p[len(p)-1]
			}
		}
	}
	return "?column?"
}

// ordering analyses ORDER BY, GROUP BY or DISTINCT ON items: an item may name a result
// column by position (ORDER BY 2) or by name, or be an expression over the FROM clause.
// A name that could be either is taken as both.
func (a *analyzer) ordering(items []*pg_query.Node, sc *scope, cols []column, how string) {
	for _, n := range items {
		if n == nil {
			continue
		}
		switch v := n.Node.(type) {
		case *pg_query.Node_SortBy:
			a.operatorName(v.SortBy.UseOp)
			a.ordering([]*pg_query.Node{v.SortBy.Node}, sc, cols, how)
			continue
		case *pg_query.Node_GroupingSet:
			a.ordering(v.GroupingSet.Content, sc, cols, how)
			continue
		case *pg_query.Node_AConst:
			if iv, ok := v.AConst.Val.(*pg_query.A_Const_Ival); ok {
				a.l.LiteralDependent = true
				if p := int(iv.Ival.Ival); p >= 1 && p <= len(cols) {
					a.use(how, cols[p-1].src)
				}
				continue
			}
		case *pg_query.Node_ColumnRef:
			if p := names(v.ColumnRef.Fields); len(p) == 1 && len(p) == len(v.ColumnRef.Fields) {
				found := false
				for _, c := range cols {
					if c.name == p[0] {
						a.use(how, c.src)
						found = true
					}
				}
				if found {
					// Also as a column of the FROM clause, without complaint if it is not.
					if src, ok := a.lookupColumn(p[0], sc); ok {
						a.use(how, src)
					}
					continue
				}
			}
		}
		a.use(how, a.expr(n, sc))
	}
}

// window analyses a window definition's PARTITION BY and ORDER BY.
func (a *analyzer) window(w *pg_query.WindowDef, sc *scope, cols []column) {
	if w == nil {
		return
	}
	a.ordering(w.PartitionClause, sc, cols, UseWindow)
	a.ordering(w.OrderClause, sc, cols, UseWindow)
	a.use(UseWindow, a.expr(w.StartOffset, sc))
	a.use(UseWindow, a.expr(w.EndOffset, sc))
}

// from analyses a FROM clause into sc's items.
func (a *analyzer) from(list []*pg_query.Node, sc *scope) {
	for _, n := range list {
		if it := a.fromItem(n, sc); it != nil {
			sc.items = append(sc.items, it)
		}
	}
}

// fromItem analyses one FROM entry. Items before it are visible to it when it is LATERAL
// (a function in FROM always is).
func (a *analyzer) fromItem(n *pg_query.Node, sc *scope) *fromItem {
	a.spend(1)
	switch v := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		return a.relationItem(v.RangeVar, sc)
	case *pg_query.Node_RangeSubselect:
		rs := v.RangeSubselect
		cols := a.query(rs.Subquery, a.innerScope(sc, rs.Lateral))
		it := &fromItem{cols: cols}
		if rs.Alias != nil {
			it.name = rs.Alias.Aliasname
			it.cols = rename(cols, names(rs.Alias.Colnames))
		}
		it.named = []*fromItem{it}
		return it
	case *pg_query.Node_RangeFunction:
		return a.functionItem(v.RangeFunction, sc)
	case *pg_query.Node_JoinExpr:
		return a.joinItem(v.JoinExpr, sc)
	case *pg_query.Node_RangeTableSample:
		it := a.fromItem(v.RangeTableSample.Relation, sc)
		for _, arg := range v.RangeTableSample.Args {
			a.use(UseCall, a.expr(arg, sc))
		}
		a.use(UseCall, a.expr(v.RangeTableSample.Repeatable, sc))
		return it
	case *pg_query.Node_RangeTableFunc:
		// XMLTABLE: its columns come from the document, which comes from its arguments.
		rf := v.RangeTableFunc
		inner := a.innerScope(sc, true)
		src := union(a.expr(rf.Docexpr, inner), a.expr(rf.Rowexpr, inner))
		a.use(UseCall, src)
		it := &fromItem{}
		for _, c := range rf.Columns {
			if col := c.GetRangeTableFuncCol(); col != nil {
				a.use(UseCall, a.expr(col.Colexpr, inner))
				it.cols = append(it.cols, column{name: col.Colname, src: src})
			}
		}
		if rf.Alias != nil {
			it.name = rf.Alias.Aliasname
			it.cols = rename(it.cols, names(rf.Alias.Colnames))
		}
		it.named = []*fromItem{it}
		return it
	}
	// JSON_TABLE and whatever else may come: its arguments are used, its columns unknown.
	inner := a.innerScope(sc, true)
	src := a.children(n.ProtoReflect(), inner)
	a.use(UseCall, src)
	it := &fromItem{unknown: true, all: src}
	it.named = []*fromItem{it}
	return it
}

// innerScope is the scope a FROM item's subquery or function sees: the enclosing queries,
// the CTEs, and (when lateral) the items before it.
func (a *analyzer) innerScope(sc *scope, lateral bool) *scope {
	in := &scope{parent: sc.parent, ctes: sc.ctes}
	if lateral {
		a.spend(len(sc.items))
		in.items = slices.Clone(sc.items)
	}
	return in
}

// functionItem analyses a function in FROM (ROWS FROM too). Its arguments are used as
// arguments of a function in FROM (a masked column there is refused); its columns come
// from them.
func (a *analyzer) functionItem(rf *pg_query.RangeFunction, sc *scope) *fromItem {
	inner := a.innerScope(sc, true)
	it := &fromItem{}
	var src []string
	var colnames []string
	undefined := 0 // functions without a column definition list: how many columns each gives is not known
	for _, f := range rf.Functions {
		parts := f.GetList().GetItems()
		if len(parts) == 0 {
			continue
		}
		if len(parts) < 2 || len(parts[1].GetList().GetItems()) == 0 {
			undefined++
		}
		fsrc := a.expr(parts[0], inner)
		a.use(UseCall, fsrc)
		src = union(src, fsrc)
		if fc := parts[0].GetFuncCall(); fc != nil {
			_, name := funcName(fc.Funcname)
			if it.name == "" {
				it.name = name
			}
		}
		if len(parts) > 1 {
			for _, cd := range parts[1].GetList().GetItems() {
				if def := cd.GetColumnDef(); def != nil {
					colnames = append(colnames, def.Colname)
				}
			}
		}
	}
	for _, cd := range rf.Coldeflist {
		if def := cd.GetColumnDef(); def != nil {
			colnames = append(colnames, def.Colname)
		}
	}
	var aliasCols []string
	if rf.Alias != nil {
		it.name = rf.Alias.Aliasname
		aliasCols = names(rf.Alias.Colnames)
	}
	if len(rf.Coldeflist) > 0 {
		undefined = 0
	}
	switch {
	case len(colnames) > 0 && undefined == 0:
		for _, c := range colnames {
			it.cols = append(it.cols, column{name: c, src: src})
		}
		it.cols = rename(it.cols, aliasCols)
	case len(aliasCols) > 0 && len(rf.Functions) == 1 && !rf.Ordinality:
		// A column list on a function whose result columns are not declared: it names
		// them, but a composite result may have more.
		for _, c := range aliasCols {
			it.cols = append(it.cols, column{name: c, src: src})
		}
		it.unknown, it.all = true, src
	default:
		it.unknown, it.all = true, src
	}
	if rf.Ordinality {
		it.cols = append(it.cols, column{name: "ordinality"})
	}
	it.named = []*fromItem{it}
	return it
}

// joinItem analyses a JOIN. USING and NATURAL compare their columns (a join use); ON is a
// filter. Without an alias the joined items stay visible by their own names.
func (a *analyzer) joinItem(j *pg_query.JoinExpr, sc *scope) *fromItem {
	// Each side is analysed as a FROM item of a scope that sees what precedes it.
	left := a.fromItem(j.Larg, sc)
	side := &scope{parent: sc.parent, ctes: sc.ctes, items: append(slices.Clone(sc.items), left)}
	right := a.fromItem(j.Rarg, side)
	if left == nil || right == nil {
		return nil
	}
	using := names(j.UsingClause)
	if j.IsNatural {
		using = nil
		for _, l := range left.cols {
			for _, r := range right.cols {
				if l.name == r.name && !slices.Contains(using, l.name) {
					using = append(using, l.name)
				}
			}
		}
		if left.unknown || right.unknown {
			a.unresolved("the columns a NATURAL join compares (a side's columns are unknown)")
			a.use(UseJoin, union(left.all, right.all, allSources(left.cols), allSources(right.cols)))
		}
	}
	it := &fromItem{}
	for _, name := range using {
		l, lok := findColumn(left, name)
		r, rok := findColumn(right, name)
		if !lok || !rok {
			a.unresolved("column %s of a USING join", name)
		}
		a.use(UseJoin, union(l.src, r.src))
		it.cols = append(it.cols, column{name: name, src: union(l.src, r.src)})
	}
	for _, side := range []*fromItem{left, right} {
		for _, c := range side.cols {
			if !slices.Contains(using, c.name) {
				it.cols = append(it.cols, c)
			}
		}
		if side.unknown {
			it.unknown = true
			it.all = union(it.all, side.all)
		}
	}
	quals := &scope{parent: sc.parent, ctes: sc.ctes, items: append(slices.Clone(sc.items), left, right)}
	a.use(UseFilter, a.expr(j.Quals, quals))
	if j.Alias != nil {
		it.name = j.Alias.Aliasname
		it.cols = rename(it.cols, names(j.Alias.Colnames))
		it.named = []*fromItem{it}
	} else {
		it.named = append(slices.Clone(left.named), right.named...)
	}
	if j.JoinUsingAlias != nil {
		ua := &fromItem{name: j.JoinUsingAlias.Aliasname, cols: it.cols[:len(using)]}
		ua.named = []*fromItem{ua}
		it.named = append(it.named, ua)
	}
	return it
}

func findColumn(it *fromItem, name string) (column, bool) {
	for _, c := range it.cols {
		if c.name == name {
			return c, true
		}
	}
	if it.unknown {
		return column{name: name, src: it.all}, true
	}
	return column{}, false
}

// relationItem resolves a relation in FROM: a CTE, or every relation of the catalog the
// name can stand for (views through their definitions to their base tables).
func (a *analyzer) relationItem(rv *pg_query.RangeVar, sc *scope) *fromItem {
	return a.relation(rv, sc, true)
}

// relation resolves a relation name; ctes says a CTE may stand for it (never for the
// target of INSERT, UPDATE, DELETE or MERGE, which is always a relation).
func (a *analyzer) relation(rv *pg_query.RangeVar, sc *scope, ctes bool) *fromItem {
	it := &fromItem{name: rv.Relname, schema: rv.Schemaname}
	if rv.Alias != nil {
		it.name, it.schema = rv.Alias.Aliasname, ""
	}
	it.named = []*fromItem{it}
	var aliasCols []string
	if rv.Alias != nil {
		aliasCols = names(rv.Alias.Colnames)
	}
	if rv.Schemaname == "" && ctes {
		for s := sc; s != nil; s = s.parent {
			a.spend(1 + len(s.ctes))
			for i := len(s.ctes) - 1; i >= 0; i-- {
				if c := s.ctes[i]; c.name == rv.Relname {
					if !c.done {
						// A CTE of a WITH RECURSIVE referred to before its columns are known
						// (a later one, or itself without a non-recursive term).
						a.unresolved("CTE %s, referred to before it is defined (WITH RECURSIVE)", c.name)
						it.unknown = true
						return it
					}
					it.cols = rename(c.cols, aliasCols)
					return it
				}
			}
		}
	}
	if a.changed {
		a.unresolved("relation %s after a schema change in this transaction or statement list (the catalog was read before it)", qualify(rv.Schemaname, rv.Relname))
	}
	rels := a.cat.lookup(rv.Schemaname, rv.Relname)
	a.named(rv.Schemaname, rv.Relname, len(rels) > 0)
	switch len(rels) {
	case 0:
		name := qualify(orPublic(rv.Schemaname), rv.Relname)
		a.read(name)
		a.unresolved("relation %s (not in the gateway's catalog of this database)", name)
		it.unknown = true
		return it
	case 1:
	default:
		var qn []string
		for _, r := range rels {
			qn = append(qn, r.qname)
		}
		a.unresolved("relation %s, which is in several schemas (%s): qualify it", rv.Relname, joinComma(qn))
	}
	for _, r := range rels {
		cols := a.relationColumns(r, rv.Inh)
		if len(rels) == 1 {
			it.cols = cols
			continue
		}
		for _, c := range cols {
			c.bare = false
			if i := slices.IndexFunc(it.cols, func(x column) bool { return x.name == c.name }); i >= 0 {
				it.cols[i].src = union(it.cols[i].src, c.src)
			} else {
				it.cols = append(it.cols, c)
			}
		}
	}
	it.cols = rename(it.cols, aliasCols)
	return it
}

func joinComma(l []string) string {
	s := ""
	for i, x := range l {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

// relationColumns are the columns of relation r as a query reads them: a table's own
// (with the same columns of the tables that inherit from it, whose rows it shows unless
// ONLY), a view's from its definition.
func (a *analyzer) relationColumns(r *relation, inh bool) []column {
	a.read(r.qname)
	for _, f := range r.Calls {
		a.code("function %s (called by the row-security policies, defaults or constraints of %s)", f, r.qname)
	}
	switch r.Kind {
	case "v", "m":
		if a.depth > maxDepth {
			a.unresolved("view %s nested deeper than %d levels", r.qname, maxDepth)
			return nil
		}
		v := a.cat.view(r, a.depth)
		if v.err != nil {
			a.unresolved("view %s: %v", r.qname, v.err)
		}
		if v.a != nil {
			a.merge(v.a)
		}
		return v.cols
	}
	cols := make([]column, 0, len(r.Columns))
	for _, name := range r.Columns {
		if name == "" {
			continue
		}
		c := column{name: name, src: []string{r.qname + "." + name}, bare: true}
		if from, ok := r.Generated[name]; ok {
			// A generated column is computed from others of its table.
			for _, f := range from {
				c.src = union(c.src, []string{r.qname + "." + f})
			}
			c.bare = false
		}
		cols = append(cols, c)
	}
	if inh {
		for _, child := range a.cat.children(r.qname) {
			a.read(child.qname)
			for i := range cols {
				if slices.Contains(child.Columns, cols[i].name) {
					cols[i].src = union(cols[i].src, []string{child.qname + "." + cols[i].name})
				}
			}
		}
	}
	return cols
}

// viewDefinition analyses a view's definition: its columns with their sources, under the
// view's own column names.
func (a *analyzer) viewDefinition(r *relation) ([]column, error) {
	tree, err := pg_query.Parse(r.View)
	if err != nil {
		return nil, err
	}
	if len(tree.Stmts) != 1 {
		return nil, errUnexpectedView
	}
	cols := a.query(tree.Stmts[0].Stmt, nil)
	var own []string
	for _, c := range r.Columns {
		if c != "" {
			own = append(own, c)
		}
	}
	return rename(cols, own), nil
}
