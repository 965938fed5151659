package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gatehouse/gatehouse/services/pgtree"
	"github.com/gatehouse/gatehouse/services/sqlscan"
)

// SQLInfo is what the real PostgreSQL parser says a statement does. It is the
// `request.sql` input of CEL rules.
type SQLInfo struct {
	Text          string   `json:"text"`
	Kinds         []string `json:"kinds"`             // every statement kind, nested ones (CTEs, EXPLAIN) included
	Tables        []string `json:"tables"`            // every table touched, schema-qualified
	TablesRead    []string `json:"tables_read"`       // tables read
	TablesWritten []string `json:"tables_written"`    // tables written or altered (DML and DDL)
	Functions     []string `json:"functions"`         // functions called
	Columns       []string `json:"columns"`           // column references as written (last name part; "*" for a star); only with AnalyzeOptions.Columns
	FilterColumns []string `json:"filter_columns"`    // columns that choose or order rows (WHERE, JOIN ON, HAVING, GROUP BY, ORDER BY); only with AnalyzeOptions.Columns
	WritingFuncs  []string `json:"writing_functions"` // functions called that change state (nextval, lo_unlink, pg_terminate_backend, dblink_exec, ...)
	DDL           bool     `json:"ddl"`               // any statement changes the schema (CREATE, ALTER, DROP, GRANT, ...)
	HasWhere      bool     `json:"has_where"`         // false when any UPDATE or DELETE lacks WHERE
	Statements    int      `json:"statements"`        // number of top-level statements
	Fingerprint   string   `json:"fingerprint"`       // normalized fingerprint (constants removed)
	ParseError    string   `json:"parse_error"`       // non-empty when the statement does not parse
	// ParsePosition is where the parser stopped, as PostgreSQL reports it in an error's
	// position field: 1-based, in characters; 0 when unknown. Not a CEL input.
	ParsePosition int `json:"-"`

	// With a catalog, tables and columns are resolved (schema-qualified; views to their
	// base tables too), columns and filter_columns are source columns
	// ("schema.table.column") however the statement names them, and these are known:
	Writes        []Write  `json:"writes"`         // every relation written, and how (through views, cascades, inheritance)
	UnknownWrites []string `json:"unknown_writes"` // code that may run and write anything: DO, CALL, functions not built in, triggers, rules
	ReadOnly      bool     `json:"read_only"`      // nothing written, no code run, no built-in with effects, no schema change
	Unresolved    []string `json:"unresolved"`     // what could not be resolved against the catalog
	// Lineage is the full analysis (nil without a catalog). Not a CEL input.
	Lineage *Lineage `json:"-"`

	cursors []string // the queries of DECLARE CURSOR, deparsed (without a catalog)
	idx     sets     // indexes the lists
	// tooComplex: refused before parsing (tooDeep).
	tooComplex bool
}

// maxDeparseDepth bounds the nesting of a statement whose parts are deparsed (a cursor's
// query, without a catalog).
const maxDeparseDepth = 500

// tooDeep says why sql is not handed to the parser, or "". A text of up to
// sqlscan.MaxDepth bytes cannot nest deeper than sqlscan.MaxDepth; a longer one is
// measured (about 5 ms per MB).
func tooDeep(sql string) string {
	if len(sql) <= sqlscan.MaxDepth {
		return ""
	}
	d, ok := sqlscan.Depth(sql)
	switch {
	case !ok:
		return "the statement cannot be read (an unterminated quote, comment or dollar quote, or a number run into a word); refusing (fail closed)"
	case d > sqlscan.MaxDepth:
		return fmt.Sprintf("the statement nests up to %d levels deep (operators, set operations, joins, brackets), over the %d the gateway parses; refusing (fail closed)", d, sqlscan.MaxDepth)
	}
	return ""
}

// AnalyzeOptions say which costly facts a policy needs.
type AnalyzeOptions struct {
	// Columns: some rule reads request.sql.columns, which needs the full parse tree.
	Columns bool
	// Catalog resolves the statement against the resource's catalog (lineage).
	Catalog *Catalog
	// SchemaChanged says the session changed the schema since the catalog was read (in
	// its open transaction): what the catalog says may no longer hold.
	SchemaChanged bool
}

// writingFunctions are functions that change state though called from a SELECT.
var writingFunctions = map[string]bool{
	"nextval": true, "setval": true, "lo_unlink": true, "lo_import": true, "lo_export": true, "lo_create": true,
	"lo_put": true, "lo_from_bytea": true, "lo_truncate": true, "pg_terminate_backend": true, "pg_cancel_backend": true,
	"pg_reload_conf": true, "pg_rotate_logfile": true, "pg_switch_wal": true, "pg_create_restore_point": true,
	"pg_advisory_lock": true, "pg_advisory_xact_lock": true, "pg_try_advisory_lock": true, "set_config": true,
	"dblink_exec": true, "dblink": true, "pg_file_write": true, "pg_read_file": true, "pg_read_binary_file": true,
	"pg_ls_dir": true, "pg_stat_reset": true, "pg_drop_replication_slot": true, "pg_create_logical_replication_slot": true,
}

// ddlKinds are statement kinds that change the schema or privileges (besides create_*,
// alter_*, drop_*).
var ddlKinds = map[string]bool{"rename": true, "comment": true, "grant": true, "grant_role": true,
	"index": true, "view": true, "create_table": true, "create_database": true, "drop_database": true,
	"create_function": true, "create_trig": true, "rule": true, "create_schema": true, "create_seq": true,
	"create_extension": true, "define": true, "composite_type": true, "create_enum": true,
	"create_table_as": true, "alter_table": true, "alter_owner": true, "reindex": true, "cluster": true, "select_into": true}

// AnalyzeSQL parses sql with pg_query. A statement that does not parse yields ParseError and
// empty facts; rules decide on it (denied by default), it is never passed through on a guess.
func AnalyzeSQL(sql string) SQLInfo { return Analyze(sql, AnalyzeOptions{}) }

// Analyze is AnalyzeSQL with options.
func Analyze(sql string, opts AnalyzeOptions) SQLInfo {
	info := SQLInfo{Text: sql, HasWhere: true}
	if reason := tooDeep(sql); reason != "" {
		info.ParseError, info.tooComplex, info.HasWhere = reason, true, false
		finish(&info)
		return info
	}
	// Most statements are plain single SELECTs: the parser's summary (computed in C) says
	// all a rule needs about them, at a tenth of the cost of building the Go parse tree.
	// Anything else (writes, DDL, several statements, FOR UPDATE, SELECT INTO) gets the full
	// tree below, and so does every statement when a rule reads the columns.
	var sum *pg_query.SummaryResult
	sumErr := errNoSummary
	if opts.Catalog == nil {
		sum, sumErr = pg_query.Summary(sql, -1)
	}
	if opts.Catalog == nil && !opts.Columns && sumErr == nil && len(sum.StatementTypes) == 1 && sum.StatementTypes[0] == "SelectStmt" &&
		!strings.Contains(strings.TrimRight(sql, "; \t\r\n"), ";") && !lockOrInto.MatchString(sql) {
		info.Kinds, info.Statements = []string{"select"}, 1
		summarize(&info, sum)
		return info
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		info.ParseError = err.Error()
		var perr *pgparser.Error
		if errors.As(err, &perr) && perr.Cursorpos > 0 {
			info.ParsePosition = perr.Cursorpos
		}
		info.HasWhere = false
		finish(&info)
		return info
	}
	info.Statements = len(tree.Stmts)
	kinds := map[string]bool{}
	if opts.Catalog != nil {
		// The lineage analysis visits every statement, nested ones included: kinds are
		// noted on the way (walking the whole tree again cost more than the analysis).
		lin := trace(opts.Catalog, tree, func(m protoreflect.Message) { noteKind(m, kinds, &info, nil) }, opts.SchemaChanged)
		info.Lineage = lin
		for _, w := range lin.Writes {
			if k := writeKinds[w.Action]; k != "" && w.Via == "" {
				kinds[k] = true
			}
		}
	} else {
		syntaxOnly(tree, kinds, &info)
	}
	for k := range kinds {
		info.Kinds = append(info.Kinds, k)
		if ddlKinds[k] || strings.HasPrefix(k, "create_") || strings.HasPrefix(k, "alter_") || strings.HasPrefix(k, "drop_") {
			info.DDL = true
		}
	}
	slices.Sort(info.Kinds)

	if info.Lineage != nil {
		resolved(&info, info.Lineage, opts.Catalog)
		if fp, err := pg_query.Fingerprint(info.Text); err == nil {
			info.Fingerprint = fp
		}
		finish(&info)
		return info
	}
	if sumErr == nil {
		for _, inner := range info.cursors {
			if isum, err := pg_query.Summary(inner, -1); err == nil {
				addTablesAndFunctions(&info, isum)
			} else {
				info.ParseError = "cannot analyse the cursor's query: " + err.Error()
			}
		}
		summarize(&info, sum)
	} else {
		finish(&info)
	}
	return info
}

// writeKinds are the statement kinds that a write action implies (INSERT ... ON CONFLICT
// DO UPDATE updates; MERGE inserts, updates and deletes as its clauses say).
var writeKinds = map[string]string{"insert": "insert", "update": "update", "delete": "delete", "truncate": "truncate", "copy_from": "copy_from"}

// readKinds are the statement kinds that leave the database as it was.
var readKinds = map[string]bool{"select": true, "explain": true, "show": true, "transaction": true, "declare_cursor": true,
	"fetch": true, "close_portal": true, "prepare": true, "execute": true, "deallocate": true, "copy": true, "copy_to": true,
	"set": true, "variable_show": true, "discard": true, "listen": true, "unlisten": true}

// resolved fills the facts a catalog resolves from the lineage. A relation or column
// renamed since the gateway first read it is listed under its name then, too, so that
// rules naming it still match.
func resolved(info *SQLInfo, lin *Lineage, cat *Catalog) {
	var s sets
	add := func(l *[]string, name string) {
		addUnique(&s, l, name)
		if o := cat.Original(name); o != name {
			addUnique(&s, l, o)
		}
	}
	info.Tables, info.TablesRead, info.TablesWritten, info.Columns, info.FilterColumns = nil, nil, nil, nil, nil
	for _, r := range lin.Reads {
		add(&info.Tables, r)
		add(&info.TablesRead, r)
	}
	for _, w := range lin.Writes {
		add(&info.Tables, w.Table)
		add(&info.TablesWritten, w.Table)
	}
	for _, stmt := range lin.Outputs {
		for _, o := range stmt {
			for _, src := range o.Sources {
				add(&info.Columns, src)
			}
		}
	}
	for _, u := range lin.Uses {
		add(&info.Columns, u.Column)
		add(&info.FilterColumns, u.Column)
	}
	info.Functions = slices.Clone(lin.Functions)
	info.WritingFuncs = slices.Clone(lin.WritingFunctions)
	info.Writes = slices.Clone(lin.Writes)
	info.UnknownWrites = slices.Clone(lin.Code)
	info.Unresolved = slices.Clone(lin.Unresolved)
	info.ReadOnly = len(lin.Writes) == 0 && len(lin.Code) == 0 && len(lin.WritingFunctions) == 0 && !info.DDL
	for _, k := range info.Kinds {
		if !readKinds[k] {
			info.ReadOnly = false
		}
	}
}

// noteKind notes the statement kind of m (a node of a parse tree), and has_where;
// onCursor, when set, hears of every DECLARE CURSOR.
func noteKind(m protoreflect.Message, kinds map[string]bool, info *SQLInfo, onCursor func(*pg_query.DeclareCursorStmt)) {
	switch n := m.Interface().(type) {
	case *pg_query.DropStmt:
		kinds["drop_"+objectKind(n.RemoveType)] = true
	case *pg_query.UpdateStmt:
		kinds["update"] = true
		info.HasWhere = info.HasWhere && n.WhereClause != nil
	case *pg_query.DeleteStmt:
		kinds["delete"] = true
		info.HasWhere = info.HasWhere && n.WhereClause != nil
	case *pg_query.SelectStmt:
		// Set operations nest SelectStmts; one kind is enough.
		kinds["select"] = true
		if len(n.LockingClause) > 0 {
			kinds["select_for_update"] = true
		}
		if n.IntoClause != nil {
			kinds["select_into"] = true // creates a table
		}
	case *pg_query.DeclareCursorStmt:
		kinds["declare_cursor"] = true
		if onCursor != nil {
			onCursor(n)
		}
	case *pg_query.CopyStmt:
		kinds["copy"] = true
		if n.IsFrom {
			kinds["copy_from"] = true
		} else {
			kinds["copy_to"] = true
		}
		if n.IsProgram {
			kinds["copy_program"] = true
		}
	case *pg_query.VariableSetStmt:
		kinds["set"] = true
		switch strings.ToLower(n.Name) {
		case "role":
			kinds["set_role"] = true
		case "session_authorization":
			kinds["set_session_authorization"] = true
		}
	default:
		if k := stmtKind(string(m.Descriptor().Name())); k != "" {
			kinds[k] = true
		}
	}
}

// syntaxOnly fills kinds, columns and filter columns from the parse tree alone (no
// catalog): names as written.
func syntaxOnly(tree *pg_query.ParseResult, kinds map[string]bool, info *SQLInfo) {
	// The parser's summary does not look inside DECLARE CURSOR: the cursor's query is
	// summarized on its own, or a cursor would read a table no rule sees.
	var cursors []string
	onCursor := func(n *pg_query.DeclareCursorStmt) {
		if n.Query == nil {
			return
		}
		if d, ok := sqlscan.Depth(info.Text); !ok || d > maxDeparseDepth {
			// pg_query's deparser recurses deeper per level than its parser (a C stack
			// overflow at about 1,500 nested subqueries): a deep cursor query is not
			// deparsed, and not decided on what it reads.
			info.ParseError = fmt.Sprintf("cannot analyse the cursor's query: it nests deeper than the %d levels the gateway deparses; refusing (fail closed)", maxDeparseDepth)
			return
		}
		inner, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.Version, Stmts: []*pg_query.RawStmt{{Stmt: n.Query}}})
		if err != nil {
			// Fail closed: a cursor whose query cannot be read is not decided on what it
			// reads.
			info.ParseError = "cannot analyse the cursor's query: " + err.Error()
		}
		cursors = append(cursors, inner)
	}
	for _, raw := range tree.Stmts {
		pgtree.Walk(raw.Stmt.ProtoReflect(), func(m protoreflect.Message) {
			if n, ok := m.Interface().(*pg_query.ColumnRef); ok {
				if len(n.Fields) > 0 {
					switch f := n.Fields[len(n.Fields)-1].Node.(type) {
					case *pg_query.Node_String_:
						addUnique(&info.idx, &info.Columns, f.String_.Sval)
					case *pg_query.Node_AStar:
						addUnique(&info.idx, &info.Columns, "*")
					}
				}
				return
			}
			noteKind(m, kinds, info, onCursor)
		})
	}
	info.cursors = cursors
	for _, raw := range tree.Stmts {
		pgtree.Walk(raw.Stmt.ProtoReflect(), func(m protoreflect.Message) {
			var filters []*pg_query.Node
			switch n := m.Interface().(type) {
			case *pg_query.SelectStmt:
				filters = append(append(append(filters, n.WhereClause, n.HavingClause), n.GroupClause...), n.SortClause...)
			case *pg_query.JoinExpr:
				filters = append(filters, n.Quals)
			case *pg_query.UpdateStmt:
				filters = append(filters, n.WhereClause)
			case *pg_query.DeleteStmt:
				filters = append(filters, n.WhereClause)
			}
			for _, f := range filters {
				if f == nil {
					continue
				}
				pgtree.Walk(f.ProtoReflect(), func(m protoreflect.Message) {
					if c, ok := m.Interface().(*pg_query.ColumnRef); ok && len(c.Fields) > 0 {
						if s, ok := c.Fields[len(c.Fields)-1].Node.(*pg_query.Node_String_); ok {
							addUnique(&info.idx, &info.FilterColumns, s.String_.Sval)
						}
					}
				})
			}
		})
	}
}

// errNoSummary: the parser's summary was not asked for (the catalog resolves instead).
var errNoSummary = errors.New("no summary")

// lockOrInto finds the words that make a SELECT more than a read (FOR UPDATE/SHARE, INTO).
var lockOrInto = regexp.MustCompile(`(?i)\b(for|into)\b`)

// summarize fills tables, functions and the fingerprint from the parser's summary.
func summarize(info *SQLInfo, sum *pg_query.SummaryResult) {
	addTablesAndFunctions(info, sum)
	if fp, err := pg_query.Fingerprint(info.Text); err == nil {
		info.Fingerprint = fp
	}
	finish(info)
}

// addTablesAndFunctions adds the tables and functions of a summary.
func addTablesAndFunctions(info *SQLInfo, sum *pg_query.SummaryResult) {
	for _, t := range sum.Tables {
		name := "public." + t.TableName
		if t.SchemaName != "" {
			name = t.SchemaName + "." + t.TableName
		}
		addUnique(&info.idx, &info.Tables, name)
		if t.Context == pg_query.SummaryResult_Select {
			addUnique(&info.idx, &info.TablesRead, name)
		} else {
			addUnique(&info.idx, &info.TablesWritten, name)
		}
	}
	for _, f := range sum.Functions {
		addUnique(&info.idx, &info.Functions, f.Name)
		if writingFunctions[f.Name] {
			addUnique(&info.idx, &info.WritingFuncs, f.Name)
		}
	}
}

// finish makes every list non-nil (CEL sees empty lists, not nulls).
func finish(info *SQLInfo) {
	for _, l := range []*[]string{&info.Kinds, &info.Tables, &info.TablesRead, &info.TablesWritten, &info.Functions, &info.Columns,
		&info.FilterColumns, &info.WritingFuncs, &info.UnknownWrites, &info.Unresolved} {
		if *l == nil {
			*l = []string{}
		}
	}
	if info.Writes == nil {
		info.Writes = []Write{}
	}
}

// stmtKind maps a parse-tree statement message name (DeleteStmt, DropdbStmt, ...) to a kind
// (delete, drop_database, ...); "" for nodes that are not statements.
func stmtKind(name string) string {
	switch name {
	case "DropdbStmt":
		return "drop_database"
	case "CreatedbStmt":
		return "create_database"
	case "CreateStmt":
		return "create_table"
	case "VariableSetStmt":
		return "set"
	case "TransactionStmt":
		return "transaction"
	case "RawStmt":
		return ""
	}
	base, ok := strings.CutSuffix(name, "Stmt")
	if !ok || base == "" {
		return ""
	}
	return snake(base)
}

func objectKind(t pg_query.ObjectType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "OBJECT_"))
}

func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
