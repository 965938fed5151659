package policy

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/schemas"
)

// Catalog is a resource's catalog (schemas.Catalog) indexed for resolving statements:
// relations by name in every schema, functions by name, and the lineage of each view,
// worked out once and kept.
type Catalog struct {
	src       *schemas.Catalog
	relations map[string][]*relation // name → the relations of that name, in every schema
	byQName   map[string]*relation   // schema.name → relation
	byOID     map[uint32]*relation
	kids      map[string][]*relation               // qualified name → the relations that inherit from it
	functions map[string][]schemas.CatalogFunction // name → the non-built-in functions of that name
	volatile  map[string]bool                      // built-in names with a volatile overload
	stable    map[string]bool                      // built-in names with a stable (and no volatile) overload
	builtin   map[string]bool                      // every built-in function name
	setReturn map[string]bool                      // names with a set-returning overload
	operators map[string]bool
	types     map[string]bool // qualified and bare names of types whose casts run user code
	trusted   map[string]bool // schema.name of functions the resource's owner vouches for

	mu    sync.Mutex
	views map[*relation]*viewLineage
}

type relation struct {
	schemas.CatalogRelation
	qname string
}

// viewLineage is what a view's definition reads, and how.
type viewLineage struct {
	cols []column // its columns, with their sources in the base tables
	a    *analyzer
	err  error
}

// NewCatalog indexes c. A catalog without the built-in function lists is refused: every
// function would look harmless in it.
func NewCatalog(c *schemas.Catalog) (*Catalog, error) {
	if c == nil {
		return nil, errors.New("no catalog")
	}
	if len(c.Builtins["v"]) == 0 || len(c.Builtins["i"]) == 0 {
		return nil, fmt.Errorf("catalog of resource %s lacks the built-in functions: it is incomplete (read by an older gateway?)", c.Resource)
	}
	ix := &Catalog{src: c, relations: map[string][]*relation{}, byQName: map[string]*relation{}, byOID: map[uint32]*relation{},
		functions: map[string][]schemas.CatalogFunction{}, volatile: map[string]bool{}, stable: map[string]bool{}, builtin: map[string]bool{}, setReturn: map[string]bool{},
		operators: map[string]bool{}, types: map[string]bool{}, trusted: map[string]bool{}, views: map[*relation]*viewLineage{}}
	for _, f := range c.Trusted {
		ix.trusted[f] = true
	}
	for i := range c.Relations {
		r := &relation{CatalogRelation: c.Relations[i], qname: c.Relations[i].Schema + "." + c.Relations[i].Name}
		ix.relations[r.Name] = append(ix.relations[r.Name], r)
		ix.byQName[r.qname] = r
		ix.byOID[r.OID] = r
	}
	ix.kids = map[string][]*relation{}
	for _, r := range ix.byQName {
		for _, p := range r.Parents {
			ix.kids[p] = append(ix.kids[p], r)
		}
	}
	for _, f := range c.Functions {
		ix.functions[f.Name] = append(ix.functions[f.Name], f)
	}
	for _, n := range c.Builtins["v"] {
		ix.volatile[n] = true
	}
	for _, l := range c.Builtins {
		for _, n := range l {
			ix.builtin[n] = true
		}
	}
	for _, n := range c.Builtins["s"] {
		ix.stable[n] = true
	}
	for _, n := range c.SetReturning {
		ix.setReturn[n] = true
	}
	for _, o := range c.Operators {
		ix.operators[o] = true
	}
	for _, t := range c.Types {
		ix.types[t] = true
		ix.types[t[strings.LastIndexByte(t, '.')+1:]] = true
	}
	return ix, nil
}

// Version is the catalog's content version.
func (c *Catalog) Version() string {
	if c == nil {
		return ""
	}
	return c.src.Version
}

// Source is the catalog as read from the database.
func (c *Catalog) Source() *schemas.Catalog { return c.src }

// Column names attribute attnum of the relation with OID oid ("schema.table.column"), as
// PostgreSQL reports result columns in RowDescription; ok is false when the catalog does
// not know it.
func (c *Catalog) Column(oid uint32, attnum int) (string, bool) {
	r := c.byOID[oid]
	if r == nil || attnum < 1 || attnum > len(r.Columns) || r.Columns[attnum-1] == "" {
		return "", false
	}
	return r.qname + "." + r.Columns[attnum-1], true
}

// Original is the name a relation ("schema.table") or column ("schema.table.column") had
// when the gateway first read it, before renames (the name itself when none).
func (c *Catalog) Original(name string) string {
	if o, ok := c.src.Renamed[name]; ok {
		return o
	}
	if i := strings.LastIndexByte(name, '.'); i > 0 && strings.Count(name, ".") == 2 {
		if o, ok := c.src.Renamed[name[:i]]; ok {
			return o + name[i:]
		}
	}
	return name
}

// maskNames are the names under which a mask can name source column col
// ("schema.table.column"): itself and its name before renames, and the same for the same
// column of every table its table inherits from (a partition's or a child's rows are the
// parent's too).
func (c *Catalog) maskNames(col string) []string {
	out := []string{col}
	if o := c.Original(col); o != col {
		out = append(out, o)
	}
	i := strings.LastIndexByte(col, '.')
	if i < 0 {
		return out
	}
	table, name := col[:i], col[i+1:]
	seen := map[string]bool{table: true}
	var up func(string, int)
	up = func(q string, depth int) {
		r := c.byQName[q]
		if r == nil || depth > maxDepth {
			return
		}
		for _, p := range r.Parents {
			if !seen[p] {
				seen[p] = true
				out = append(out, p+"."+name)
				if o := c.Original(p + "." + name); o != p+"."+name {
					out = append(out, o)
				}
				up(p, depth+1)
			}
		}
	}
	up(table, 0)
	return out
}

// renamedFrom reports whether some relation or column now goes by another name than
// original, the name it had when first read.
func (c *Catalog) renamedFrom(original string) bool {
	for _, o := range c.src.Renamed {
		if o == original || strings.HasPrefix(original, o+".") {
			return true
		}
	}
	return false
}

// Has reports whether the catalog has a relation with this qualified name.
func (c *Catalog) Has(qname string) bool { return c.byQName[qname] != nil }

// ColumnsOf are the qualified column names of relation qname.
func (c *Catalog) ColumnsOf(qname string) []string {
	r := c.byQName[qname]
	if r == nil {
		return nil
	}
	var out []string
	for _, col := range r.Columns {
		if col != "" {
			out = append(out, qname+"."+col)
		}
	}
	return out
}

// children are the relations that inherit from qname (partitions included), at any depth.
func (c *Catalog) children(qname string) []*relation {
	var out []*relation
	seen := map[string]bool{qname: true}
	var add func(string, int)
	add = func(q string, depth int) {
		if depth > maxDepth {
			return
		}
		for _, k := range c.kids[q] {
			if !seen[k.qname] {
				seen[k.qname] = true
				out = append(out, k)
				add(k.qname, depth+1)
			}
		}
	}
	add(qname, 0)
	return out
}

// lookup finds the relations a name can stand for. A qualified name is one relation (or
// none). An unqualified one is every relation of that name in any schema: the session's
// search_path can be changed (SET, set_config, a function's SET clause, ALTER ROLE), so the
// analysis does not guess which schema it resolves to and considers them all.
func (c *Catalog) lookup(schema, name string) []*relation {
	if schema != "" {
		if r := c.byQName[schema+"."+name]; r != nil {
			return []*relation{r}
		}
		return nil
	}
	return c.relations[name]
}

// view returns the lineage of view r's columns, analysing its definition once.
func (c *Catalog) view(r *relation, depth int) *viewLineage {
	c.mu.Lock()
	v, ok := c.views[r]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = &viewLineage{}
	a := newAnalyzer(c)
	a.depth = depth + 1
	cols, err := a.viewDefinition(r)
	v.cols, v.a, v.err = cols, a, err
	c.mu.Lock()
	c.views[r] = v
	c.mu.Unlock()
	return v
}

// Catalogs holds the latest catalog of every resource, indexed, for the decisions.
type Catalogs struct {
	// Fetch, when set, reads a resource's catalog from the store: a decision asks for a
	// version newer than the one held (the proxy has just read and published it).
	Fetch func(resource string) (*schemas.Catalog, error)
	// OnError hears of catalogs that cannot be used.
	OnError func(resource string, err error)

	mu sync.Mutex
	by map[string]*Catalog
}

// Set indexes and keeps c, unless the same version is held already.
func (cs *Catalogs) Set(c *schemas.Catalog) {
	cs.mu.Lock()
	cur := cs.by[c.Resource]
	cs.mu.Unlock()
	if cur != nil && cur.Version() == c.Version {
		return
	}
	ix, err := NewCatalog(c)
	if err != nil {
		if cs.OnError != nil {
			cs.OnError(c.Resource, err)
		}
		return
	}
	cs.mu.Lock()
	if cs.by == nil {
		cs.by = map[string]*Catalog{}
	}
	cs.by[c.Resource] = ix
	cs.mu.Unlock()
}

// For returns the catalog of resource (nil when none is known), reading it from the store
// when the caller has published a version other than the one held.
func (cs *Catalogs) For(resource, version string) *Catalog {
	cs.mu.Lock()
	cur := cs.by[resource]
	cs.mu.Unlock()
	if (cur == nil || (version != "" && cur.Version() != version)) && cs.Fetch != nil {
		c, err := cs.Fetch(resource)
		if err != nil {
			if cs.OnError != nil {
				cs.OnError(resource, err)
			}
		} else if c != nil {
			cs.Set(c)
			cs.mu.Lock()
			cur = cs.by[resource]
			cs.mu.Unlock()
		}
	}
	return cur
}
