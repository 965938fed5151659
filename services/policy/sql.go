package policy

import (
	"regexp"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// SQLInfo is what the real PostgreSQL parser says a statement does. It is the
// `request.sql` input of CEL rules.
type SQLInfo struct {
	Text          string   `json:"text"`
	Kinds         []string `json:"kinds"`          // every statement kind, nested ones (CTEs, EXPLAIN) included
	Tables        []string `json:"tables"`         // every table touched, schema-qualified
	TablesRead    []string `json:"tables_read"`    // tables read
	TablesWritten []string `json:"tables_written"` // tables written or altered (DML and DDL)
	Functions     []string `json:"functions"`      // functions called
	HasWhere      bool     `json:"has_where"`      // false when any UPDATE or DELETE lacks WHERE
	Statements    int      `json:"statements"`     // number of top-level statements
	Fingerprint   string   `json:"fingerprint"`    // normalized fingerprint (constants removed)
	ParseError    string   `json:"parse_error"`    // non-empty when the statement does not parse
}

// AnalyzeSQL parses sql with pg_query. A statement that does not parse yields ParseError and
// empty facts; rules decide on it (denied by default), it is never passed through on a guess.
func AnalyzeSQL(sql string) SQLInfo {
	info := SQLInfo{Text: sql, HasWhere: true}
	// Most statements are plain single SELECTs: the parser's summary (computed in C) says
	// all a rule needs about them, at a tenth of the cost of building the Go parse tree.
	// Anything else (writes, DDL, several statements, FOR UPDATE, SELECT INTO) gets the full
	// tree below.
	sum, sumErr := pg_query.Summary(sql, -1)
	if sumErr == nil && len(sum.StatementTypes) == 1 && sum.StatementTypes[0] == "SelectStmt" &&
		!strings.Contains(strings.TrimRight(sql, "; \t\r\n"), ";") && !lockOrInto.MatchString(sql) {
		info.Kinds, info.Statements = []string{"select"}, 1
		summarize(&info, sum)
		return info
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		info.ParseError = err.Error()
		info.HasWhere = false
		finish(&info)
		return info
	}
	info.Statements = len(tree.Stmts)
	kinds := map[string]bool{}
	for _, raw := range tree.Stmts {
		walk(raw.Stmt.ProtoReflect(), func(m protoreflect.Message) {
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
			default:
				if k := stmtKind(string(m.Descriptor().Name())); k != "" {
					kinds[k] = true
				}
			}
		})
	}
	for k := range kinds {
		info.Kinds = append(info.Kinds, k)
	}
	slices.Sort(info.Kinds)

	if sumErr == nil {
		summarize(&info, sum)
	} else {
		finish(&info)
	}
	return info
}

// lockOrInto finds the words that make a SELECT more than a read (FOR UPDATE/SHARE, INTO).
var lockOrInto = regexp.MustCompile(`(?i)\b(for|into)\b`)

// summarize fills tables, functions and the fingerprint from the parser's summary.
func summarize(info *SQLInfo, sum *pg_query.SummaryResult) {
	for _, t := range sum.Tables {
		name := "public." + t.TableName
		if t.SchemaName != "" {
			name = t.SchemaName + "." + t.TableName
		}
		info.Tables = appendUnique(info.Tables, name)
		if t.Context == pg_query.SummaryResult_Select {
			info.TablesRead = appendUnique(info.TablesRead, name)
		} else {
			info.TablesWritten = appendUnique(info.TablesWritten, name)
		}
	}
	for _, f := range sum.Functions {
		info.Functions = appendUnique(info.Functions, f.Name)
	}
	if fp, err := pg_query.Fingerprint(info.Text); err == nil {
		info.Fingerprint = fp
	}
	finish(info)
}

// finish makes every list non-nil (CEL sees empty lists, not nulls).
func finish(info *SQLInfo) {
	for _, l := range []*[]string{&info.Kinds, &info.Tables, &info.TablesRead, &info.TablesWritten, &info.Functions} {
		if *l == nil {
			*l = []string{}
		}
	}
}

func appendUnique(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
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

// walk calls fn for m and every message below it.
func walk(m protoreflect.Message, fn func(protoreflect.Message)) {
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fn)
			}
		case fd.IsMap():
		default:
			walk(v.Message(), fn)
		}
		return true
	})
}
