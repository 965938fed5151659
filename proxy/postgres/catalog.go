package postgres

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse/gatehouse/services/config"
)

// catalogTTL is how long the proxy trusts what it learnt of a table's columns (a renamed
// column is masked under its new name after at most this long).
const catalogTTL = time.Minute

// catalog maps the table OIDs and attribute numbers that RowDescription reports to
// "schema.table.column" names, for masking by source column. It asks the backend on a side
// connection of its own (never inside a client's session, where it could disturb a
// transaction or a pipeline) and remembers the answer per resource.
type catalog struct {
	srv *Server
	res *config.Resource

	mu     sync.Mutex
	tables map[uint32]*tableColumns
}

type tableColumns struct {
	names   map[uint16]string
	fetched time.Time
}

func (s *Server) catalogFor(res *config.Resource) *catalog {
	s.catMu.Lock()
	defer s.catMu.Unlock()
	c := s.catalogs[res.Name]
	if c == nil || c.res != res {
		c = &catalog{srv: s, res: res, tables: map[uint32]*tableColumns{}}
		s.catalogs[res.Name] = c
	}
	return c
}

// column returns the qualified name of attribute attnum of table oid.
func (c *catalog) column(oid uint32, attnum uint16) (string, error) {
	if oid == 0 {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tables[oid]
	if t == nil || time.Since(t.fetched) > catalogTTL {
		var err error
		if t, err = c.fetch(oid); err != nil {
			return "", err
		}
		if len(c.tables) > 10000 {
			clear(c.tables)
		}
		c.tables[oid] = t
	}
	return t.names[attnum], nil
}

func (c *catalog) fetch(oid uint32) (*tableColumns, error) {
	cfg, err := c.srv.backendConfig(c.res)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams = map[string]string{"application_name": "gatehouse:catalog"}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.StartupTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog connection: %w", err)
	}
	defer conn.Close(context.Background())
	rr := conn.ExecParams(ctx, `SELECT a.attnum, n.nspname || '.' || c.relname || '.' || a.attname
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, [][]byte{[]byte(strconv.FormatUint(uint64(oid), 10))}, nil, nil, nil)
	t := &tableColumns{names: map[uint16]string{}, fetched: time.Now()}
	for rr.NextRow() {
		v := rr.Values()
		n, err := strconv.ParseUint(string(v[0]), 10, 16)
		if err != nil {
			continue
		}
		t.names[uint16(n)] = string(v[1])
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("catalog query: %w", err)
	}
	return t, nil
}
