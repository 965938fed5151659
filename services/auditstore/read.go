// Package auditstore reads the audit trail back from ClickHouse's events table, for the
// components that check it: query (verify, replay) and ingest (the sweeper).
package auditstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gatehouse/gatehouse/schemas"
)

// Columns are the events table's columns that make an event, in ScanEvent's order.
const Columns = `id, type, code, time_us, session_id, seq, resource, identity_sub, identity_name, identity_issuer,
		identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash, payload`

// ScanEvent reads the current row of a query over Columns into e.
func ScanEvent(rows driver.Rows, e *schemas.Event) error {
	var us uint64
	var payload string
	*e = schemas.Event{}
	if err := rows.Scan(&e.ID, &e.Type, &e.Code, &us, &e.SessionID, &e.Seq, &e.Resource, &e.Identity.Subject, &e.Identity.Name, &e.Identity.Issuer,
		&e.Identity.Groups, &e.Identity.Kind, &e.Identity.OnBehalfOf, &e.PolicyRevision, &e.PrevHash, &e.Hash, &payload); err != nil {
		return err
	}
	if len(e.Identity.Groups) == 0 {
		e.Identity.Groups = nil
	}
	e.Time = time.UnixMicro(int64(us)).UTC()
	e.Payload = json.RawMessage(payload)
	return nil
}

// ReadSession reads one session's events in sequence order (by id among equals), each
// stored event once (FINAL).
func ReadSession(ctx context.Context, ch driver.Conn, db, session string) ([]schemas.Event, error) {
	rows, err := ch.Query(ctx, `SELECT `+Columns+` FROM `+db+`.events FINAL WHERE session_id = ? ORDER BY seq, id`, session)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []schemas.Event
	for rows.Next() {
		var e schemas.Event
		if err := ScanEvent(rows, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
