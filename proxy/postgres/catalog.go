package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
	pgcatalog "github.com/gatehouse/gatehouse/services/catalogs"
	"github.com/gatehouse/gatehouse/services/config"
)

// The proxy reads each resource's catalog with the credential it holds (on a side
// connection of its own, never inside a client's session) and hands it to its
// CatalogSink, which publishes it for the policy service: what the policy resolves a
// statement against. It reads it again after a session's schema change, and every
// CatalogRefresh. The proxy itself uses it to name the source column of each result
// column (RowDescription's table OID and attribute number), a second line of masking.

// CatalogSink publishes a resource's catalog (KV bucket gh_catalogs).
type CatalogSink interface {
	PutCatalog(ctx context.Context, c *schemas.Catalog) error
}

// CatalogSource reads the catalog last published for a resource (nil, nil: none). A sink
// that is one too lets a proxy that starts carry the renames recorded before it.
type CatalogSource interface {
	Get(ctx context.Context, resource string) (*schemas.Catalog, error)
}

// catalogs holds the catalog of every resource the proxy has served.
type catalogs struct {
	srv  *Server
	mu   sync.Mutex
	byRs map[string]*resourceCatalog
}

// resourceCatalog is one resource's catalog, with the state of its refresh.
type resourceCatalog struct {
	mu    sync.Mutex // held while reading it from the database
	res   *config.Resource
	cur   atomic.Pointer[catalogState]
	stale atomic.Bool // a session changed the schema since it was read
}

// catalogState is a catalog as read, with its relations' columns by table OID.
type catalogState struct {
	c       *schemas.Catalog
	columns map[uint32]string // "oid" → "schema.table."; with names below
	names   map[uint32][]string
}

func newCatalogs(s *Server) *catalogs {
	return &catalogs{srv: s, byRs: map[string]*resourceCatalog{}}
}

func (cs *catalogs) of(res *config.Resource) *resourceCatalog {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	rc := cs.byRs[res.Name]
	if rc == nil || rc.res != res {
		rc = &resourceCatalog{res: res}
		cs.byRs[res.Name] = rc
	}
	return rc
}

// ensure makes sure the resource's catalog has been read (and published): when it never
// was, is older than the refresh interval, or a schema change made it stale. When a read
// fails the previous catalog stays in use and the error is returned; without one, the
// error alone.
func (cs *catalogs) ensure(ctx context.Context, res *config.Resource) (*resourceCatalog, error) {
	rc := cs.of(res)
	if !rc.needsRead(cs.srv.cfg.CatalogRefresh) {
		return rc, nil
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.needsRead(cs.srv.cfg.CatalogRefresh) {
		return rc, nil // another session read it meanwhile
	}
	stale := rc.stale.Swap(false)
	c, err := cs.srv.readCatalog(ctx, res)
	if err == nil {
		// A relation or column renamed since keeps the name the policy knows it by.
		var prev *schemas.Catalog
		if st := rc.cur.Load(); st != nil {
			prev = st.c
		} else if src, ok := cs.srv.catalogSink.(CatalogSource); ok {
			if prev, err = src.Get(ctx, res.Name); err != nil {
				cs.srv.log.Warn("cannot read the catalog last published; renames before it are not carried", "resource", res.Name, "err", err)
				prev, err = nil, nil
			}
		}
		c.CarryRenames(prev)
		c.Seal()
	}
	if err == nil && cs.srv.catalogSink != nil {
		if err = cs.srv.catalogSink.PutCatalog(ctx, c); err != nil {
			err = fmt.Errorf("publish the catalog of %s: %w", res.Name, err)
		}
	}
	if err != nil {
		if stale {
			rc.stale.Store(true)
		}
		if rc.cur.Load() != nil {
			return rc, err
		}
		return nil, err
	}
	st := &catalogState{c: c, columns: map[uint32]string{}, names: map[uint32][]string{}}
	for _, r := range c.Relations {
		st.columns[r.OID] = r.Schema + "." + r.Name + "."
		st.names[r.OID] = r.Columns
	}
	rc.cur.Store(st)
	return rc, nil
}

// needsRead reports whether the catalog must be read again.
func (rc *resourceCatalog) needsRead(every time.Duration) bool {
	if every <= 0 {
		every = time.Minute
	}
	return rc.cur.Load() == nil || rc.stale.Load() || rc.age() >= every
}

func (rc *resourceCatalog) age() time.Duration {
	if st := rc.cur.Load(); st != nil {
		return time.Since(st.c.Fetched)
	}
	return time.Duration(1 << 62)
}

// version is the version of the catalog the proxy has published ("" if none).
func (rc *resourceCatalog) version() string {
	if st := rc.cur.Load(); st != nil {
		return st.c.Version
	}
	return ""
}

// column returns the qualified name of attribute attnum of table oid; ok is false when the
// catalog does not know it (a table created since it was read).
func (rc *resourceCatalog) column(oid uint32, attnum uint16) (string, bool) {
	st := rc.cur.Load()
	if st == nil {
		return "", false
	}
	cols, ok := st.names[oid]
	if !ok || attnum < 1 || int(attnum) > len(cols) || cols[attnum-1] == "" {
		return "", false
	}
	return st.columns[oid] + cols[attnum-1], true
}

// refreshLoop reads again, every refresh interval, the catalog of every resource the proxy
// has served, so that long sessions are decided on a current one.
func (cs *catalogs) refreshLoop(ctx context.Context) {
	every := cs.srv.cfg.CatalogRefresh
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cs.mu.Lock()
		var rcs []*resourceCatalog
		for _, rc := range cs.byRs {
			rcs = append(rcs, rc)
		}
		cs.mu.Unlock()
		for _, rc := range rcs {
			if _, err := cs.ensure(ctx, rc.res); err != nil && ctx.Err() == nil {
				cs.srv.log.Warn("catalog refresh failed; the previous catalog stays in use", "resource", rc.res.Name, "err", err)
			}
		}
	}
}

// anyMasked reports whether table oid has a column m masks (false when the catalog does
// not know the table: a caller masks it anyway).
func (rc *resourceCatalog) anyMasked(oid uint32, m interface{ Column(string) (string, bool) }) bool {
	st := rc.cur.Load()
	if st == nil {
		return true
	}
	cols, ok := st.names[oid]
	if !ok {
		return true
	}
	for _, c := range cols {
		if c == "" {
			continue
		}
		if _, masked := m.Column(st.columns[oid] + c); masked {
			return true
		}
	}
	return false
}

// markStale notes that a session changed the schema of res: the catalog is read again
// before the next decision.
func (cs *catalogs) markStale(res *config.Resource) { cs.of(res).stale.Store(true) }

// readCatalog reads res's catalog on a side connection with the credential the proxy holds.
func (s *Server) readCatalog(ctx context.Context, res *config.Resource) (*schemas.Catalog, error) {
	cfg, err := s.backendConfig(res)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.StartupTimeout)
	defer cancel()
	c, err := pgcatalog.ReadPostgres(ctx, cfg, res.Name)
	if err != nil {
		return nil, err
	}
	c.Trusted = res.Postgres.TrustedFunctions
	c.Seal()
	return c, nil
}
