package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Catalog is what a PostgreSQL resource's database holds, as the gateway's own credential
// sees it: every relation with its columns (views with their definitions), and the
// functions, operators and types that are not built in. The PostgreSQL proxy reads it
// with the credential it holds and puts it in KV bucket gh_catalogs under the resource's
// name; the policy service resolves every column a statement touches against it (masking
// by lineage, writes through views, functions that may write) without a database
// connection of its own.
type Catalog struct {
	Resource string    `json:"resource"`
	Version  string    `json:"version"` // content hash, set by Seal
	Fetched  time.Time `json:"fetched"`
	// Server is server_version_num.
	Server int `json:"server"`
	// User is the role the gateway connects as (what "$user" means in a search_path).
	User      string            `json:"user"`
	Relations []CatalogRelation `json:"relations"`
	// Functions are the functions and procedures that are not built in (OID >= 16384):
	// user-defined and from extensions.
	Functions []CatalogFunction `json:"functions"`
	// Builtins are the built-in function names by volatility ("i", "s", "v"); a name with
	// overloads of several volatilities is under the most volatile. A name in none of them
	// and not in Functions is not known (created since the catalog was read?).
	Builtins map[string][]string `json:"builtins"`
	// SetReturning are the names of functions (built in or not) with a set-returning
	// overload: in a select list their row counts depend on their arguments.
	SetReturning []string `json:"set_returning,omitempty"`
	// EventTriggers says the database has enabled event triggers: every schema change runs
	// their functions.
	EventTriggers bool `json:"event_triggers,omitempty"`
	// Operators are the names of operators that are not built in: a statement that uses
	// one runs user code.
	Operators []string `json:"operators,omitempty"`
	// Types are the qualified names of types that are not built in and have a cast or I/O
	// function that is not built in: a cast to one runs user code.
	Types []string `json:"types,omitempty"`
	// Trusted are the functions ("schema.name") the resource's configuration vouches for
	// (postgres.trusted_functions): they write nothing, read no table, change no setting.
	Trusted []string `json:"trusted,omitempty"`
	// Renamed maps the current name of a relation ("schema.table") or column
	// ("schema.table.column") that was renamed since the gateway first read it to the name
	// it had then (found by its object ID): a policy naming the old name still applies.
	Renamed map[string]string `json:"renamed,omitempty"`
}

// CatalogRelation is a table, view, materialized view, foreign table, sequence or
// partitioned table.
type CatalogRelation struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	OID    uint32 `json:"oid"`
	// Kind is pg_class.relkind: r table, p partitioned table, v view, m materialized view,
	// f foreign table, S sequence.
	Kind string `json:"kind"`
	// Columns are the column names by attribute number (Columns[0] is attnum 1); a dropped
	// column is "".
	Columns []string `json:"columns"`
	// View is the definition of a view or materialized view (pg_get_viewdef).
	View string `json:"view,omitempty"`
	// Parents are the qualified names of the tables it inherits from or is a partition of:
	// a write to it is a write to them (and a write to them may reach it).
	Parents []string `json:"parents,omitempty"`
	// Triggers are its user-defined triggers (name): a write to it runs their functions.
	Triggers []string `json:"triggers,omitempty"`
	// Rules says it has rewrite rules other than a view's own: a statement on it may do
	// something else entirely.
	Rules bool `json:"rules,omitempty"`
	// Cascades are the tables whose rows a delete or update of its rows changes through
	// foreign keys (ON DELETE/UPDATE CASCADE, SET NULL, SET DEFAULT).
	Cascades []string `json:"cascades,omitempty"`
	// Calls are the functions that are not built in which its defaults, check constraints,
	// generated columns or row-security policies call.
	Calls []string `json:"calls,omitempty"`
	// Generated are its generated columns, each with the columns of the table it is
	// computed from.
	Generated map[string][]string `json:"generated,omitempty"`
}

// CatalogFunction is a function or procedure that is not built in.
type CatalogFunction struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Kind is pg_proc.prokind: f function, p procedure, a aggregate, w window.
	Kind string `json:"kind"`
	// Volatility is pg_proc.provolatile: i immutable, s stable, v volatile.
	Volatility string `json:"volatility"`
	Language   string `json:"language"`
}

// Seal sets Version to the hash of everything else in the catalog (Fetched excluded:
// the same database read twice has the same version).
func (c *Catalog) Seal() {
	cp := *c
	cp.Version, cp.Fetched = "", time.Time{}
	b, _ := json.Marshal(&cp)
	sum := sha256.Sum256(b)
	c.Version = hex.EncodeToString(sum[:12])
}

// CarryRenames sets c.Renamed from the catalog read before it: the renames prev recorded
// for objects c still has, and every relation or column whose object ID is in both under
// another name (mapped to the name prev knew it by).
func (c *Catalog) CarryRenames(prev *Catalog) {
	if prev == nil {
		return
	}
	// originalTable and originalColumn are the names prev's object had when first read.
	originalTable := func(q string) string {
		if o, ok := prev.Renamed[q]; ok {
			return o
		}
		return q
	}
	originalColumn := func(q, col string) string {
		if o, ok := prev.Renamed[q+"."+col]; ok {
			return o
		}
		return originalTable(q) + "." + col
	}
	byOID := map[uint32]*CatalogRelation{}
	for i := range prev.Relations {
		byOID[prev.Relations[i].OID] = &prev.Relations[i]
	}
	out := map[string]string{}
	for _, r := range c.Relations {
		p := byOID[r.OID]
		if p == nil {
			continue // new, or dropped and made again: not the object prev knew
		}
		q, pq := r.Schema+"."+r.Name, p.Schema+"."+p.Name
		table := originalTable(pq)
		if table != q {
			out[q] = table
		}
		for i, col := range r.Columns {
			if col == "" || i >= len(p.Columns) || p.Columns[i] == "" {
				continue
			}
			// Recorded only where the table's own mapping does not already say it.
			if o := originalColumn(pq, p.Columns[i]); o != table+"."+col {
				out[q+"."+col] = o
			}
		}
	}
	if len(out) > 0 {
		c.Renamed = out
	}
}
