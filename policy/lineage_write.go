package policy

import (
	"errors"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

var errUnexpectedView = errors.New("its definition is not one query")

// targetItem is the relation a DML statement writes, as a FROM item (RETURNING, SET,
// WHERE see it).
func (a *analyzer) targetItem(rv *pg_query.RangeVar, sc *scope) *fromItem {
	if rv == nil {
		return nil
	}
	return a.relation(rv, sc, false)
}

func (a *analyzer) insertStmt(s *pg_query.InsertStmt, parent *scope) []column {
	sc := &scope{parent: parent}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	a.writeRelation(s.Relation, "insert", false)
	var values []column
	if s.SelectStmt != nil {
		values = a.query(s.SelectStmt, sc)
		a.use(UseWrite, allSources(values))
	}
	target := a.targetItem(s.Relation, sc)
	if oc := s.OnConflictClause; oc != nil && target != nil {
		conflict := &scope{parent: sc.parent, ctes: sc.ctes, items: []*fromItem{target}}
		if oc.Infer != nil {
			// The conflict target decides which rows conflict: it compares values.
			for _, e := range oc.Infer.IndexElems {
				if ie := e.GetIndexElem(); ie != nil {
					if ie.Name != "" {
						if src, ok := a.lookupColumn(ie.Name, conflict); ok {
							a.use(UseFilter, src)
						}
					}
					a.use(UseFilter, a.expr(ie.Expr, conflict))
				}
			}
			a.use(UseFilter, a.expr(oc.Infer.WhereClause, conflict))
		}
		if oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
			a.writeRelation(s.Relation, "update", false)
			// EXCLUDED is the row proposed for insertion.
			excluded := &fromItem{name: "excluded"}
			for _, c := range target.cols {
				excluded.cols = append(excluded.cols, column{name: c.name, src: allSources(values)})
			}
			excluded.named = []*fromItem{excluded}
			conflict.items = append(conflict.items, excluded)
			for _, t := range oc.TargetList {
				if rt := t.GetResTarget(); rt != nil {
					a.use(UseWrite, a.expr(rt.Val, conflict))
				}
			}
			a.use(UseFilter, a.expr(oc.WhereClause, conflict))
		}
	}
	if len(s.ReturningList) == 0 || target == nil {
		return nil
	}
	return a.targets(s.ReturningList, &scope{parent: sc.parent, ctes: sc.ctes, items: []*fromItem{target}})
}

func (a *analyzer) updateStmt(s *pg_query.UpdateStmt, parent *scope) []column {
	sc := &scope{parent: parent}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	a.writeRelation(s.Relation, "update", false)
	target := a.targetItem(s.Relation, sc)
	if target != nil {
		sc.items = append(sc.items, target)
	}
	a.from(s.FromClause, sc)
	for _, t := range s.TargetList {
		if rt := t.GetResTarget(); rt != nil {
			a.use(UseWrite, a.expr(rt.Val, sc))
		}
	}
	a.use(UseFilter, a.expr(s.WhereClause, sc))
	return a.targets(s.ReturningList, sc)
}

func (a *analyzer) deleteStmt(s *pg_query.DeleteStmt, parent *scope) []column {
	sc := &scope{parent: parent}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	a.writeRelation(s.Relation, "delete", false)
	if target := a.targetItem(s.Relation, sc); target != nil {
		sc.items = append(sc.items, target)
	}
	a.from(s.UsingClause, sc)
	a.use(UseFilter, a.expr(s.WhereClause, sc))
	return a.targets(s.ReturningList, sc)
}

func (a *analyzer) mergeStmt(s *pg_query.MergeStmt, parent *scope) []column {
	sc := &scope{parent: parent}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	a.write(rangeVarName(a, s.Relation), "merge")
	if target := a.targetItem(s.Relation, sc); target != nil {
		sc.items = append(sc.items, target)
	}
	if s.SourceRelation != nil {
		if src := a.fromItem(s.SourceRelation, sc); src != nil {
			sc.items = append(sc.items, src)
		}
	}
	a.use(UseFilter, a.expr(s.JoinCondition, sc))
	for _, w := range s.MergeWhenClauses {
		mw := w.GetMergeWhenClause()
		if mw == nil {
			continue
		}
		a.use(UseFilter, a.expr(mw.Condition, sc))
		switch mw.CommandType {
		case pg_query.CmdType_CMD_INSERT:
			a.writeRelation(s.Relation, "insert", false)
		case pg_query.CmdType_CMD_UPDATE:
			a.writeRelation(s.Relation, "update", false)
		case pg_query.CmdType_CMD_DELETE:
			a.writeRelation(s.Relation, "delete", false)
		}
		for _, t := range mw.TargetList {
			if rt := t.GetResTarget(); rt != nil {
				a.use(UseWrite, a.expr(rt.Val, sc))
			}
		}
		for _, v := range mw.Values {
			a.use(UseWrite, a.expr(v, sc))
		}
	}
	return a.targets(s.ReturningList, sc)
}

// copyStmt analyses COPY: FROM writes the table; TO reads it (or a query) and sends its
// rows to the client, or writes them to a server file or program.
func (a *analyzer) copyStmt(s *pg_query.CopyStmt) []Output {
	toClient := s.Filename == "" && !s.IsProgram
	if s.IsProgram {
		a.code("COPY %s PROGRAM %q", map[bool]string{true: "FROM", false: "TO"}[s.IsFrom], s.Filename)
	}
	var cols []column
	switch {
	case s.Query != nil:
		cols = a.query(s.Query, nil)
	case s.Relation != nil && s.IsFrom:
		a.writeRelation(s.Relation, "copy_from", false)
		sc := &scope{}
		if it := a.targetItem(s.Relation, sc); it != nil {
			sc.items = []*fromItem{it}
		}
		a.use(UseFilter, a.expr(s.WhereClause, sc))
		return nil
	case s.Relation != nil:
		it := a.relationItem(s.Relation, &scope{})
		cols = a.itemColumns(it)
		if attl := names(s.Attlist); len(attl) > 0 {
			var picked []column
			for _, n := range attl {
				c, ok := findColumn(it, n)
				if !ok {
					a.unresolved("column %s of %s", n, s.Relation.Relname)
				}
				c.name = n
				picked = append(picked, c)
			}
			cols = picked
		}
	}
	if s.IsFrom {
		return nil
	}
	if !toClient {
		// Rows written to a file on the server leave unmasked, and the file is a write.
		a.use(UseWrite, allSources(cols))
		if !s.IsProgram {
			a.code("COPY TO the server file %q", s.Filename)
		}
		return nil
	}
	// The proxy masks COPY output field by field, split at tabs: another format or
	// delimiter would put a masked value where it does not look.
	for _, o := range s.Options {
		de := o.GetDefElem()
		if de == nil {
			continue
		}
		switch v := strings.ToLower(constString(de.Arg)); de.Defname {
		case "format":
			if v != "text" {
				a.unresolved("COPY in %s format (the gateway masks COPY output in the default text format only)", v)
			}
		case "delimiter":
			if v != "\t" && v != "	" {
				a.unresolved("COPY with delimiter %q (the gateway masks COPY output split at tabs only)", v)
			}
		}
	}
	return outputs(cols)
}

// writeRelation records a write of the relation rv names, and everything that write
// reaches: a view's base tables, tables inheriting from it and those it inherits from,
// tables changed through foreign keys (cascade), and the code its triggers, rules and
// defaults run.
func (a *analyzer) writeRelation(rv *pg_query.RangeVar, action string, cascade bool) {
	if rv == nil {
		return
	}
	if a.changed {
		a.code("a write to %s after a schema change in this transaction or statement list: what it reaches (triggers, rules, views) is not in the catalog yet", qualify(orPublic(rv.Schemaname), rv.Relname))
	}
	rels := a.cat.lookup(rv.Schemaname, rv.Relname)
	a.named(rv.Schemaname, rv.Relname, len(rels) > 0)
	if len(rels) == 0 {
		name := qualify(orPublic(rv.Schemaname), rv.Relname)
		a.write(name, action)
		a.code("a write to %s, which is not in the gateway's catalog of this database (created since it was read?): what it reaches is unknown", name)
		return
	}
	seen := map[*relation]string{}
	for _, r := range rels {
		a.writeTo(r, action, "", cascade, rv.Inh, 0, seen)
	}
}

// writeTo records a write of r and what it reaches; seen holds the relations already
// followed with an action (cascades and inheritance can meet again, and loop).
func (a *analyzer) writeTo(r *relation, action, via string, cascade, inh bool, depth int, seen map[*relation]string) {
	if depth > maxDepth {
		a.code("writes that cascade deeper than %d tables", maxDepth)
		return
	}
	a.writeVia(r.qname, action, via)
	if seen[r] == action {
		return
	}
	seen[r] = action
	for _, t := range r.Triggers {
		a.code("trigger %s on %s", t, r.qname)
	}
	if r.Rules {
		a.code("rules on %s", r.qname)
	}
	for _, f := range r.Calls {
		a.code("function %s (called by the defaults, constraints or row-security policies of %s)", f, r.qname)
	}
	switch r.Kind {
	case "v":
		// An updatable view writes its base relations (a view with INSTEAD OF triggers or
		// rules runs them instead, listed above).
		v := a.cat.view(r, a.depth)
		if v.a != nil {
			for _, base := range v.a.l.Reads {
				if br := a.cat.byQName[base]; br != nil && br != r {
					a.writeTo(br, action, "view "+r.qname, cascade, true, depth+1, seen)
				}
			}
		}
	case "m":
		// REFRESH runs the definition: what it calls runs.
		if v := a.cat.view(r, a.depth); v.a != nil {
			for _, c := range v.a.l.Code {
				a.code("%s", c)
			}
			for _, f := range v.a.l.WritingFunctions {
				addUnique(&a.sets, &a.l.WritingFunctions, f)
			}
		}
	case "S":
		return
	}
	for _, p := range r.Parents {
		if pr := a.cat.byQName[p]; pr != nil {
			a.writeVia(pr.qname, action, "inheritance from "+r.qname)
		}
	}
	if inh {
		for _, child := range a.cat.children(r.qname) {
			a.writeTo(child, action, "inheritance from "+r.qname, cascade, false, depth+1, seen)
		}
	}
	if action == "delete" || action == "update" || action == "merge" || (action == "truncate" && cascade) {
		for _, c := range r.Cascades {
			if cr := a.cat.byQName[c]; cr != nil {
				a.writeTo(cr, cascadeAction(action), "cascade from "+r.qname, false, true, depth+1, seen)
			}
		}
	}
}

func cascadeAction(action string) string {
	if action == "truncate" {
		return "truncate"
	}
	return "update" // ON DELETE CASCADE deletes, SET NULL updates: either way rows change
}

// lexingSettings are the settings that change how the server splits and reads a statement:
// the gateway pins them at session start and refuses changes.
var lexingSettings = map[string]string{
	"client_encoding":             "the bytes of every later statement would be read in another encoding than the gateway reads them",
	"standard_conforming_strings": "backslashes in later statements' strings would be read as escapes, which the gateway does not read them as",
}

// setStmt refuses a SET of a lexing setting to anything but the value the gateway pins.
func (a *analyzer) setStmt(s *pg_query.VariableSetStmt) {
	name := strings.ToLower(s.Name)
	why, ok := lexingSettings[name]
	if !ok {
		return
	}
	a.l.LiteralDependent = true
	switch s.Kind {
	case pg_query.VariableSetKind_VAR_RESET, pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET_ALL:
		return // back to the value pinned at session start
	case pg_query.VariableSetKind_VAR_SET_VALUE:
		if len(s.Args) == 1 && pinnedValue(name, constString(s.Args[0])) {
			return
		}
	}
	a.l.Refusal = "Gatehouse pins " + name + " for the session (" + pinned[name] + "): changing it is refused, since " + why
}

var pinned = map[string]string{"client_encoding": "UTF8", "standard_conforming_strings": "on"}

// pinnedValue reports whether v sets setting name to the value the gateway pins.
func pinnedValue(name, v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	switch name {
	case "client_encoding":
		return v == "utf8" || v == "utf-8" || v == "unicode"
	case "standard_conforming_strings":
		return v == "on" || v == "true" || v == "yes" || v == "1"
	}
	return false
}

// constString is the value of a string, integer or boolean constant ("" otherwise).
func constString(n *pg_query.Node) string {
	if sv, ok := strNode(n); ok {
		return sv
	}
	c := n.GetAConst()
	if c == nil {
		if tc := n.GetTypeCast(); tc != nil {
			return constString(tc.Arg)
		}
		return ""
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Sval:
		return v.Sval.Sval
	case *pg_query.A_Const_Ival:
		return itoa(int(v.Ival.Ival))
	case *pg_query.A_Const_Boolval:
		if v.Boolval.Boolval {
			return "on"
		}
		return "off"
	}
	return ""
}
