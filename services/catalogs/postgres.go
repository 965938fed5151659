package catalogs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse/gatehouse/schemas"
)

// maxCatalogBytes bounds the catalog the proxy publishes (a KV value is one NATS message).
const maxCatalogBytes = 8 << 20

// ReadPostgres reads the catalog of a PostgreSQL database (resource) with the connection
// settings cfg (the gateway's own credential), on a connection of its own.
func ReadPostgres(ctx context.Context, cfg *pgconn.Config, resource string) (*schemas.Catalog, error) {
	cfg = cfg.Copy()
	// With an empty search_path every name a view definition prints is schema-qualified
	// (pg_catalog's too, when shadowed): the policy resolves them without guessing.
	cfg.RuntimeParams = map[string]string{"application_name": "gatehouse:catalog", "search_path": "", "client_encoding": "UTF8"}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog connection: %w", err)
	}
	defer conn.Close(context.Background())
	c := &schemas.Catalog{Resource: resource, Fetched: time.Now().UTC(), Builtins: map[string][]string{}}
	rows, err := query(ctx, conn, `SELECT current_user, current_setting('server_version_num')`)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, errors.New("catalog: no answer to current_user")
	}
	c.User = rows[0][0]
	c.Server, _ = strconv.Atoi(rows[0][1])
	if rows, err = query(ctx, conn, catalogRelations); err != nil {
		return nil, err
	}
	for _, r := range rows {
		oid, err := strconv.ParseUint(r[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("catalog: relation oid %q: %w", r[0], err)
		}
		rel := schemas.CatalogRelation{OID: uint32(oid), Schema: r[1], Name: r[2], Kind: r[3], View: r[5], Rules: r[8] == "t"}
		if err := json.Unmarshal([]byte(r[11]), &rel.Generated); err != nil {
			return nil, fmt.Errorf("catalog: relation %s.%s: generated columns: %w", r[1], r[2], err)
		}
		if len(rel.Generated) == 0 {
			rel.Generated = nil
		}
		for _, f := range []struct {
			dst *[]string
			src string
		}{{&rel.Columns, r[4]}, {&rel.Parents, r[6]}, {&rel.Triggers, r[7]}, {&rel.Cascades, r[9]}, {&rel.Calls, r[10]}} {
			if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
				return nil, fmt.Errorf("catalog: relation %s.%s: %w", r[1], r[2], err)
			}
			if len(*f.dst) == 0 {
				*f.dst = nil
			}
		}
		c.Relations = append(c.Relations, rel)
	}
	if rows, err = query(ctx, conn, `SELECT n.nspname, p.proname, p.prokind, p.provolatile, l.lanname
		FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		JOIN pg_catalog.pg_language l ON l.oid = p.prolang
		WHERE p.oid >= 16384 ORDER BY 1, 2, 3, 4, 5`); err != nil {
		return nil, err
	}
	for _, r := range rows {
		c.Functions = append(c.Functions, schemas.CatalogFunction{Schema: r[0], Name: r[1], Kind: r[2], Volatility: r[3], Language: r[4]})
	}
	// Built-in names under their most volatile overload ('i' < 's' < 'v').
	if rows, err = query(ctx, conn, `SELECT v, json_agg(proname ORDER BY proname) FROM (
		SELECT proname, max(provolatile) AS v FROM pg_catalog.pg_proc WHERE oid < 16384 GROUP BY proname) s
		GROUP BY v`); err != nil {
		return nil, err
	}
	for _, r := range rows {
		var l []string
		if err := json.Unmarshal([]byte(r[1]), &l); err != nil {
			return nil, fmt.Errorf("catalog: built-in functions: %w", err)
		}
		c.Builtins[r[0]] = l
	}
	if rows, err = query(ctx, conn, `SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE proretset ORDER BY 1`); err != nil {
		return nil, err
	}
	for _, r := range rows {
		c.SetReturning = append(c.SetReturning, r[0])
	}
	if rows, err = query(ctx, conn, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtenabled <> 'D')`); err != nil {
		return nil, err
	}
	c.EventTriggers = len(rows) == 1 && rows[0][0] == "t"
	if rows, err = query(ctx, conn, `SELECT DISTINCT oprname FROM pg_catalog.pg_operator WHERE oid >= 16384 ORDER BY 1`); err != nil {
		return nil, err
	}
	for _, r := range rows {
		c.Operators = append(c.Operators, r[0])
	}
	if rows, err = query(ctx, conn, `SELECT DISTINCT n.nspname || '.' || t.typname FROM pg_catalog.pg_type t
		JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		WHERE t.typinput >= 16384 OR t.oid IN (
			SELECT castsource FROM pg_catalog.pg_cast WHERE castfunc >= 16384
			UNION SELECT casttarget FROM pg_catalog.pg_cast WHERE castfunc >= 16384)
		OR t.oid IN (SELECT k.contypid FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_depend d
			ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = k.oid
			AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid >= 16384 WHERE k.contypid <> 0)
		ORDER BY 1`); err != nil {
		return nil, err
	}
	for _, r := range rows {
		c.Types = append(c.Types, r[0])
	}
	c.Seal()
	if b, _ := json.Marshal(c); len(b) > maxCatalogBytes {
		return nil, fmt.Errorf("the catalog of %s is %d bytes, over the gateway's limit of %d", resource, len(b), maxCatalogBytes)
	}
	return c, nil
}

// catalogRelations lists every relation but system ones' TOAST and other sessions'
// temporary tables, with what a write to it reaches.
const catalogRelations = `
SELECT c.oid, n.nspname, c.relname, c.relkind,
  (SELECT coalesce(json_agg(CASE WHEN a.attisdropped THEN '' ELSE a.attname END ORDER BY a.attnum), '[]')
     FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0),
  CASE WHEN c.relkind IN ('v', 'm') THEN coalesce(pg_catalog.pg_get_viewdef(c.oid), '') ELSE '' END,
  (SELECT coalesce(json_agg(pn.nspname || '.' || p.relname ORDER BY i.inhseqno), '[]')
     FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid),
  (SELECT coalesce(json_agg(t.tgname ORDER BY t.tgname), '[]') FROM pg_catalog.pg_trigger t
     WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
  EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'),
  (SELECT coalesce(json_agg(DISTINCT fn.nspname || '.' || f.relname), '[]')
     FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class f ON f.oid = k.conrelid
     JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
     WHERE k.contype = 'f' AND k.confrelid = c.oid
       AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))),
  (SELECT coalesce(json_agg(DISTINCT pn.nspname || '.' || p.proname), '[]')
     FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
     WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid >= 16384 AND (
       (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid = c.oid))
    OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_constraint WHERE conrelid = c.oid))
    OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (SELECT k.oid FROM pg_catalog.pg_constraint k
          JOIN pg_catalog.pg_attribute a ON a.atttypid = k.contypid WHERE a.attrelid = c.oid AND k.contypid <> 0))
    OR (d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_policy WHERE polrelid = c.oid))
    OR (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = c.oid)))),
  (SELECT coalesce(json_object_agg(g.attname, (SELECT coalesce(json_agg(DISTINCT ra.attname), '[]')
       FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute ra ON ra.attrelid = d.refobjid AND ra.attnum = d.refobjsubid
       WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
         AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjsubid > 0 AND ra.attnum <> g.attnum)), '{}')
     FROM pg_catalog.pg_attribute g JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = g.attrelid AND ad.adnum = g.attnum
     WHERE g.attrelid = c.oid AND g.attgenerated <> '' AND NOT g.attisdropped)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname !~ '^pg_toast' AND (n.nspname !~ '^pg_temp_' OR n.oid = pg_catalog.pg_my_temp_schema())
ORDER BY n.nspname, c.relname`

// query runs sql and returns its rows as text.
func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	rr := conn.ExecParams(ctx, sql, nil, nil, nil, nil)
	var out [][]string
	for rr.NextRow() {
		vals := rr.Values()
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = string(v)
		}
		out = append(out, row)
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("catalog query: %w", err)
	}
	return out, nil
}
