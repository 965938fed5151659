package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
)

// Inserted reports the highest GH_AUDIT stream sequence below which every event is in
// ClickHouse (ingest acknowledges after the insert): the export never passes it, so that an
// event inserted late cannot fall behind a cursor.
type Inserted func(ctx context.Context) (uint64, error)

// SetInserted gives the export its bound (without one it exports what it finds).
func (a *API) SetInserted(f Inserted) { a.inserted = f }

const maxExportBatch = 10000

// Cursor is a position in the event order: the JetStream stream sequence of the message and
// the event's index within it.
type Cursor struct {
	Seq   uint64
	Index uint32
}

func (c Cursor) String() string { return fmt.Sprintf("%d:%d", c.Seq, c.Index) }

// ParseCursor reads "seq:index" ("" is the beginning).
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	a, b, ok := strings.Cut(s, ":")
	seq, err1 := strconv.ParseUint(a, 10, 64)
	idx, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return Cursor{}, fmt.Errorf("cursor %q is not SEQ:INDEX", s)
	}
	return Cursor{seq, uint32(idx)}, nil
}

// export streams events after the cursor in event order, as NDJSON: GET
// /api/v1/export?cursor=SEQ:INDEX&limit=N&format=native|ocsf. The response's
// X-Gatehouse-Cursor is where to resume: a client that always resumes from it gets every
// event exactly once.
func (a *API) export(c echo.Context) error {
	ctx := c.Request().Context()
	cur, err := ParseCursor(c.QueryParam("cursor"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	limit := 1000
	if s := c.QueryParam("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > maxExportBatch {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("limit must be 1..%d", maxExportBatch))
		}
	}
	format := c.QueryParam("format")
	if format == "" {
		format = "native"
	}
	if format != "native" && format != "ocsf" {
		return echo.NewHTTPError(http.StatusBadRequest, "format must be native or ocsf")
	}
	bound := uint64(1<<63 - 1)
	if a.inserted != nil {
		if bound, err = a.inserted(ctx); err != nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "ingest position unknown: "+err.Error())
		}
	}
	rows, err := a.ch.Query(ctx, `SELECT id, type, code, time_us, session_id, seq, resource, identity_sub, identity_name, identity_issuer,
		identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash, payload, stream_seq, stream_index
		FROM `+a.db+`.events FINAL
		WHERE (stream_seq > ? OR (stream_seq = ? AND stream_index > ?)) AND stream_seq <= ?
		ORDER BY stream_seq, stream_index LIMIT ?`, cur.Seq, cur.Seq, cur.Index, bound, uint64(limit))
	if err != nil {
		return a.storeError(err)
	}
	defer rows.Close()
	var events []schemas.Event
	next := cur
	for rows.Next() {
		var e schemas.Event
		var us uint64
		var payload string
		if err := rows.Scan(&e.ID, &e.Type, &e.Code, &us, &e.SessionID, &e.Seq, &e.Resource, &e.Identity.Subject, &e.Identity.Name, &e.Identity.Issuer,
			&e.Identity.Groups, &e.Identity.Kind, &e.Identity.OnBehalfOf, &e.PolicyRevision, &e.PrevHash, &e.Hash, &payload, &next.Seq, &next.Index); err != nil {
			return a.storeError(err)
		}
		if len(e.Identity.Groups) == 0 {
			e.Identity.Groups = nil
		}
		e.Time = time.UnixMicro(int64(us)).UTC()
		e.Payload = json.RawMessage(payload)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return a.storeError(err)
	}
	var protocols map[string]string
	if format == "ocsf" {
		if protocols, err = a.protocols(ctx, events); err != nil {
			return a.storeError(err)
		}
	}
	lines := make([][]byte, 0, len(events))
	for i := range events {
		e := &events[i]
		var line []byte
		if format == "ocsf" {
			if line, err = json.Marshal(OCSFProtocol(e, protocols[e.SessionID])); err != nil {
				return err
			}
		} else {
			line = e.AppendJSON(nil)
		}
		lines = append(lines, line)
	}
	h := c.Response().Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("X-Gatehouse-Cursor", next.String())
	h.Set("X-Gatehouse-Events", strconv.Itoa(len(lines)))
	c.Response().WriteHeader(http.StatusOK)
	for _, l := range lines {
		if _, err := c.Response().Write(append(l, '\n')); err != nil {
			return nil
		}
	}
	return nil
}

// protocols finds the protocol of the sessions of the events whose OCSF class depends on it
// (decisions, session ends, the responses of HTTP and Kubernetes requests: their payloads
// do not say), from the sessions' session.start.
func (a *API) protocols(ctx context.Context, events []schemas.Event) (map[string]string, error) {
	var ids []string
	seen := map[string]bool{}
	for i := range events {
		switch events[i].Type {
		case schemas.TypeDecision, schemas.TypeSessionEnd, schemas.TypeSessionTerminated,
			schemas.TypeHttpResponse, schemas.TypeHttpBody, schemas.TypeHttpWs, schemas.TypeHttpDone:
			if id := events[i].SessionID; !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	set := clickhouse.GroupSet{Value: make([]any, len(ids))}
	for i, id := range ids {
		set.Value[i] = id
	}
	// IN a set of session ids: the table is ordered by session_id, so only their ranges
	// are read.
	rows, err := a.ch.Query(ctx, `SELECT session_id, any(visitParamExtractString(payload, 'protocol')) FROM `+a.db+`.events
		WHERE session_id IN ? AND type = 'session.start' GROUP BY session_id`, set)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, protocol string
		if err := rows.Scan(&id, &protocol); err != nil {
			return nil, err
		}
		out[id] = protocol
	}
	return out, rows.Err()
}
