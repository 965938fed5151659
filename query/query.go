// Package query is the HTTP API over the ClickHouse audit store: sessions and their replay.
// Every route requires an OIDC bearer token of an identity in an auditor group.
package query

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/auditstore"
	"github.com/gatehouse/gatehouse/services/identity"
)

// API serves /api/v1.
type API struct {
	ch            driver.Conn
	db            string
	verifier      *identity.Verifier
	auditorGroups []string
	log           *slog.Logger
	keys          map[string]ed25519.PublicKey // seals accepted by verify
	inserted      Inserted
	alive         GatewayAlive
}

// New makes the API.
func New(ch driver.Conn, db string, v *identity.Verifier, auditorGroups []string, log *slog.Logger) *API {
	return &API{ch: ch, db: db, verifier: v, auditorGroups: auditorGroups, log: log}
}

// Register mounts the routes.
func (a *API) Register(e *echo.Echo) {
	// The auditor check is per route, not on a group: a group's middleware would also run
	// for every unknown /api/v1 path and answer it "not an auditor" instead of 404.
	auditor := a.verifier.Middleware(a.auditorGroups, "auditor")
	for path, h := range map[string]echo.HandlerFunc{
		"/sessions": a.listSessions, "/sessions/:id": a.replay, "/sessions/:id/terminals": a.terminals,
		"/sessions/:id/asciicast": a.asciicast, "/audit/verify": a.verify, "/export": a.export,
		"/evidence/charts": a.charts, "/evidence/:kind": a.evidence,
	} {
		e.GET("/api/v1"+path, h, auditor)
	}
}

// Session is one row of the session list.
type Session struct {
	ID string `json:"id"`
	// Identity is the caller's token subject; Name its readable name (identity.name; empty
	// for sessions recorded before names were).
	Identity string `json:"identity"`
	Name     string `json:"name,omitempty"`
	Resource string `json:"resource"`
	// Protocol is postgres, ssh, http or kubernetes; Login, for SSH, the account on the host.
	Protocol   string     `json:"protocol"`
	Login      string     `json:"login,omitempty"`
	Start      time.Time  `json:"start"`
	End        *time.Time `json:"end,omitempty"`
	Statements uint64     `json:"statements"` // SQL statements, SSH or HTTP requests
	Denied     uint64     `json:"denied"`     // denied by a rule or the gateway
	Held       uint64     `json:"held"`       // held for approval (Approved of them approved)
	Masked     uint64     `json:"masked"`
	Approved   uint64     `json:"approved"`
	Events     uint64     `json:"events"`
}

// maxLabelFilters bounds the label= filters of one search.
const maxLabelFilters = 16

func (a *API) listSessions(c echo.Context) error {
	limit := 50
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return echo.NewHTTPError(http.StatusBadRequest, "limit must be 1..1000")
		}
		limit = n
	}
	where := []string{"type != 'auth.failed'", "resource != '_config'"} // configuration changes are not sessions
	var args []any
	if v := c.QueryParam("identity"); v != "" {
		// A subject or a name: people know a colleague by email, not by the IdP's ID.
		where = append(where, "(identity_sub = ? OR identity_name = ?)")
		args = append(args, v, v)
	}
	if v := c.QueryParam("resource"); v != "" {
		where = append(where, "resource = ?")
		args = append(args, v)
	}
	if v := c.QueryParam("group"); v != "" {
		where = append(where, "has(identity_groups, ?)")
		args = append(args, v)
	}
	having := []string{"start_us > 0"}
	var hargs []any
	for _, p := range []struct{ param, cond string }{{"since", "start_us >= ?"}, {"until", "start_us <= ?"}, {"before", "start_us < ?"}} {
		v := c.QueryParam(p.param)
		if v == "" {
			continue
		}
		var us uint64
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			us = uint64(t.UnixMicro())
		} else if n, err := strconv.ParseUint(v, 10, 64); err == nil && p.param == "before" {
			us = n // the next-page cursor
		} else {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time", p.param, v))
		}
		having = append(having, p.cond)
		hargs = append(hargs, us)
	}
	switch v := c.QueryParam("effect"); v {
	case "":
	case "denied":
		having = append(having, "denied > 0")
	case "held":
		having = append(having, "held > 0")
	case "masked":
		having = append(having, "masked > 0")
	case "approved":
		having = append(having, "approved > 0")
	case "allowed":
		having = append(having, "countIf(type = 'decision' AND visitParamExtractString(payload, 'effect') = 'allow') > 0")
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "effect must be allowed, denied, held, masked or approved")
	}
	if v := c.QueryParam("text"); v != "" {
		// SQL as sent; for SSH, the command of an exec, a subsystem's name, the paths of an
		// sftp operation and of the files that went through; for HTTP and Kubernetes, a
		// request's path, query string (a kubectl exec's command is there) and recorded body.
		having = append(having, `countIf((type = 'db.query' AND position(lower(visitParamExtractString(payload, 'sql')), lower(?)) > 0)
			OR (type = 'ssh.request' AND (position(lower(visitParamExtractString(payload, 'command')), lower(?)) > 0
				OR position(lower(visitParamExtractString(payload, 'subsystem')), lower(?)) > 0
				OR position(lower(visitParamExtractString(payload, 'path')), lower(?)) > 0
				OR position(lower(visitParamExtractString(payload, 'target')), lower(?)) > 0))
			OR (type = 'ssh.file' AND position(lower(visitParamExtractString(payload, 'path')), lower(?)) > 0)
			OR (type = 'mcp.call' AND position(lower(visitParamExtractString(payload, 'arguments')), lower(?)) > 0)
			OR (type = 'http.request' AND (position(lower(visitParamExtractString(payload, 'path')), lower(?)) > 0
				OR position(lower(visitParamExtractString(payload, 'query')), lower(?)) > 0
				OR position(lower(visitParamExtractString(payload, 'body')), lower(?)) > 0))) > 0`)
		hargs = append(hargs, v, v, v, v, v, v, v, v, v, v)
	}
	switch v := c.QueryParam("protocol"); v {
	case "":
	case "postgres", "ssh", "http", "kubernetes":
		having = append(having, "protocol = ?")
		hargs = append(hargs, v)
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "protocol must be postgres, ssh, http or kubernetes")
	}
	// Sessions on resources with every label given, as the resource had them when the
	// session started (its session.start records them).
	labels := c.QueryParams()["label"]
	if len(labels) > maxLabelFilters {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("at most %d label filters", maxLabelFilters))
	}
	for _, l := range labels {
		needle, err := labelNeedle(l)
		if err != nil {
			return err
		}
		having = append(having, "countIf(type = 'session.start' AND position(visitParamExtractRaw(payload, 'labels'), ?) > 0) > 0")
		hargs = append(hargs, needle)
	}
	if v := c.QueryParam("fingerprint"); v != "" {
		having = append(having, "countIf(type = 'decision' AND visitParamExtractString(payload, 'fingerprint') = ?) > 0")
		hargs = append(hargs, v)
	}
	args = append(append(args, hargs...), limit)
	q := fmt.Sprintf(`SELECT session_id, any(identity_sub), anyIf(identity_name, identity_name != ''), any(resource),
		minIf(time_us, type = 'session.start') AS start_us, if(maxIf(seq, type NOT IN ('session.end', 'session.sealed')) >= maxIf(seq, type = 'session.end'), 0, maxIf(time_us, type = 'session.end')) AS end_us,
		multiIf((anyIf(visitParamExtractString(payload, 'protocol'), type = 'session.start') AS start_protocol) != '', start_protocol,
			countIf(type LIKE 'ssh.%%') > 0, 'ssh',
			countIf(type = 'kube.io' OR (type = 'http.request' AND visitParamHas(payload, 'kube'))) > 0, 'kubernetes',
			countIf(type LIKE 'http.%%') > 0, 'http', 'postgres') AS protocol,
		anyIf(visitParamExtractString(payload, 'login'), type = 'session.start') AS login,
		countIf(type IN ('db.query', 'ssh.request', 'http.request', 'mcp.call')) AS statements,
		countIf((type = 'decision' AND visitParamExtractString(payload, 'effect') = 'deny')
			OR (type = 'mcp.result' AND visitParamExtractString(payload, 'status') = 'denied')) AS denied,
		countIf(type = 'decision' AND visitParamExtractString(payload, 'effect') = 'require_approval') AS held,
		countIf(type = 'decision' AND visitParamExtractString(payload, 'effect') = 'mask') AS masked,
		countIf(type = 'approval.decided' AND visitParamExtractString(payload, 'outcome') = 'approved') AS approved,
		count() AS events
		FROM %s.events FINAL WHERE %s GROUP BY session_id HAVING %s
		ORDER BY start_us DESC LIMIT ?`, a.db, strings.Join(where, " AND "), strings.Join(having, " AND "))
	rows, err := a.ch.Query(c.Request().Context(), q, args...)
	if err != nil {
		return a.storeError(err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		var s Session
		var start, end uint64
		if err := rows.Scan(&s.ID, &s.Identity, &s.Name, &s.Resource, &start, &end, &s.Protocol, &s.Login, &s.Statements, &s.Denied, &s.Held, &s.Masked, &s.Approved, &s.Events); err != nil {
			return a.storeError(err)
		}
		s.Start = time.UnixMicro(int64(start)).UTC()
		if end > 0 {
			t := time.UnixMicro(int64(end)).UTC()
			s.End = &t
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return a.storeError(err)
	}
	resp := map[string]any{"sessions": out}
	if len(out) == limit {
		resp["next_before"] = strconv.FormatInt(out[len(out)-1].Start.UnixMicro(), 10) // the next page: ?before=
	}
	return c.JSON(http.StatusOK, resp)
}

// Replay is a session's events in order, with the result of checking its hash chain.
type Replay struct {
	SessionID  string          `json:"session_id"`
	Events     []schemas.Event `json:"events"`
	ChainOK    bool            `json:"chain_ok"`
	ChainError string          `json:"chain_error,omitempty"`
}

// replay streams a session as a Replay object: the events go out as ClickHouse returns
// them (a session of 100,000 events starts arriving at once, and the gateway never holds it
// whole), with the chain checked on the way; chain_ok follows the events.
func (a *API) replay(c echo.Context) error {
	id := c.Param("id")
	ctx := c.Request().Context()
	rows := &sessionRows{ctx: ctx, ch: a.ch, db: a.db, id: id, size: 1000} // from seq 0: a stored 0 is shown, though invalid
	defer rows.Close()
	var e, prev schemas.Event
	var at, prevAt uint64
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return a.storeError(err)
		}
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no session %q (events may take a few seconds to arrive)", id))
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	w.WriteHeader(http.StatusOK)
	buf := append([]byte(`{"session_id":`), schemas.AppendJSONString(nil, id)...)
	buf = append(buf, `,"events":[`...)
	var chain schemas.Chain
	var chainErr error
	for n := 0; ; n++ {
		if err := rows.Scan(&e, &at); err != nil {
			a.log.Error("replay: reading the session failed midway", "session", id, "err", err)
			return nil // the client sees a truncated body, not a valid replay
		}
		// Rows under one key come first-stored first: the first is the event (the store
		// keeps it; verify reads it); a later publication under its key is left out
		// (verify reports it as shadowed); two rows from one stream position that differ
		// were altered in the store.
		if n > 0 && e.ID == prev.ID && e.Seq == prev.Seq {
			if chainErr == nil && at == prevAt && !auditstore.Same(&e, &prev) {
				chainErr = fmt.Errorf("event %s (seq %d) is stored twice with different content (event altered)", e.ID, e.Seq)
			}
			if !rows.Next() {
				break
			}
			continue
		}
		if chainErr == nil && e.Type != schemas.TypeSessionAttested { // an attestation is outside the chain
			chainErr = chain.Add(&e)
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = e.AppendJSON(buf)
		// The first events go out at once; then in pieces of about 64 KiB.
		if n == 0 || len(buf) >= 64<<10 {
			if _, err := w.Write(buf); err != nil {
				return nil
			}
			if n == 0 {
				w.Flush()
			}
			buf = buf[:0]
		}
		prev, prevAt = e, at
		if !rows.Next() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		a.log.Error("replay: reading the session failed midway", "session", id, "err", err)
		return nil
	}
	buf = append(buf, `],"chain_ok":`...)
	if chainErr == nil {
		buf = append(buf, "true}\n"...)
	} else {
		buf = append(buf, `false,"chain_error":`...)
		buf = schemas.AppendJSONString(buf, chainErr.Error())
		buf = append(buf, "}\n"...)
	}
	_, _ = w.Write(buf)
	return nil
}

// sessionRows reads a session in sequence order, in ranges of sequence numbers: the first
// range is small, so its rows arrive at once (ClickHouse 18.16 sorts a query's whole result
// before sending any of it), the later ones large. No FINAL (which merges on one thread): a
// row stored twice comes twice, next to its copy.
type sessionRows struct {
	ctx       context.Context
	ch        driver.Conn
	db, id    string
	lo, size  uint64
	rows      driver.Rows
	got, done bool
	err       error
}

func (r *sessionRows) Next() bool {
	for !r.done && r.err == nil {
		if r.rows != nil {
			if r.rows.Next() {
				r.got = true
				return true
			}
			r.err = r.rows.Err()
			r.rows.Close()
			r.rows = nil
			if r.err != nil {
				return false
			}
			if r.got {
				r.lo, r.size = r.lo+r.size, 20000
			} else {
				// A gap wider than the range (events missing): go on from the next one there is.
				var next uint64
				if r.err = r.ch.QueryRow(r.ctx, "SELECT min(seq) FROM "+r.db+".events WHERE session_id = ? AND seq >= ?", r.id, r.lo).Scan(&next); r.err != nil {
					return false
				}
				if next == 0 {
					r.done = true
					return false
				}
				r.lo = next
			}
		}
		r.got = false
		r.rows, r.err = r.ch.Query(r.ctx, `SELECT `+auditstore.Columns+`, stream_seq FROM `+r.db+`.events WHERE session_id = ? AND seq >= ? AND seq < ? ORDER BY seq, id, stream_seq`, r.id, r.lo, r.lo+r.size)
	}
	return false
}

// Scan reads the current row and the stream position JetStream stored it at.
func (r *sessionRows) Scan(e *schemas.Event, streamSeq *uint64) error {
	return auditstore.ScanEventAt(r.rows, e, streamSeq)
}

func (r *sessionRows) Err() error { return r.err }

func (r *sessionRows) Close() {
	if r.rows != nil {
		r.rows.Close()
	}
}

// ReadSession reads one session's events from ClickHouse in sequence order.
func ReadSession(ctx context.Context, ch driver.Conn, db, session string) ([]schemas.Event, error) {
	return auditstore.ReadSession(ctx, ch, db, session)
}

func (a *API) storeError(err error) error {
	if errors.Is(err, context.Canceled) {
		return echo.NewHTTPError(499, "request cancelled")
	}
	a.log.Error("clickhouse query failed", "err", err)
	msg := "audit store unavailable: " + err.Error()
	if exc := (*clickhouse.Exception)(nil); errors.As(err, &exc) && exc.Code == chUnknownTable {
		msg += " (the audit store's tables are created and upgraded by ingest: while it applies a" +
			" schema migration the events table is offline; its log says which and how far — see" +
			" 'Upgrading the audit store' in docs/operations.md)"
	}
	return echo.NewHTTPError(http.StatusServiceUnavailable, msg)
}

// chUnknownTable is ClickHouse's UNKNOWN_TABLE: a table ingest has not created yet, or
// one a migration has taken offline while it rebuilds it.
const chUnknownTable = 60
