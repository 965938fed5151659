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
func ScanEvent(rows driver.Rows, e *schemas.Event) error { return scanEvent(rows, e) }

// ScanEventAt is ScanEvent for a query over Columns followed by stream_seq.
func ScanEventAt(rows driver.Rows, e *schemas.Event, streamSeq *uint64) error {
	return scanEvent(rows, e, streamSeq)
}

func scanEvent(rows driver.Rows, e *schemas.Event, more ...any) error {
	var us uint64
	var payload string
	*e = schemas.Event{}
	dest := append([]any{&e.ID, &e.Type, &e.Code, &us, &e.SessionID, &e.Seq, &e.Resource, &e.Identity.Subject, &e.Identity.Name, &e.Identity.Issuer,
		&e.Identity.Groups, &e.Identity.Kind, &e.Identity.OnBehalfOf, &e.PolicyRevision, &e.PrevHash, &e.Hash, &payload}, more...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	if len(e.Identity.Groups) == 0 {
		e.Identity.Groups = nil
	}
	e.Time = time.UnixMicro(int64(us)).UTC()
	e.Payload = json.RawMessage(payload)
	return nil
}

// Shadow is a row stored under the key (session, position, id) of an event stored before
// it, with other content. Later is true when JetStream stored it later than the kept
// event (a later publication under a taken id: the store's rule keeps the first, and
// every session read ignores it); false when both came from one stream position, which
// no publication can do: the row was altered in the store.
type Shadow struct {
	Seq   uint64
	ID    string
	Later bool
}

// ReadSession reads one session's events in sequence order (by id among equals): of the
// rows stored under one key, the one JetStream stored first, which is the one the table
// keeps when ClickHouse merges (ReplacingMergeTree(ver), ver from the stream position).
// Rows are read as stored, not FINAL: a copy of an event in another partition (its
// resource or month rewritten) is never merged away, and the choice must not depend on
// merges. Identical copies (a redelivery) are dropped silently.
func ReadSession(ctx context.Context, ch driver.Conn, db, session string) ([]schemas.Event, error) {
	evs, _, err := ReadSessionShadows(ctx, ch, db, session)
	return evs, err
}

// ReadSessionShadows is ReadSession, and the rows it set aside that differ from the event
// kept under their key (for verify to report).
func ReadSessionShadows(ctx context.Context, ch driver.Conn, db, session string) ([]schemas.Event, []Shadow, error) {
	rows, err := ch.Query(ctx, `SELECT `+Columns+`, stream_seq FROM `+db+`.events WHERE session_id = ? ORDER BY seq, id, stream_seq`, session)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []schemas.Event
	var shadows []Shadow
	var keptAt uint64
	for rows.Next() {
		var e schemas.Event
		var at uint64
		if err := ScanEventAt(rows, &e, &at); err != nil {
			return nil, nil, err
		}
		if n := len(out); n > 0 && out[n-1].Seq == e.Seq && out[n-1].ID == e.ID {
			if !Same(&out[n-1], &e) && (len(shadows) == 0 || shadows[len(shadows)-1].Seq != e.Seq || shadows[len(shadows)-1].ID != e.ID) {
				shadows = append(shadows, Shadow{Seq: e.Seq, ID: e.ID, Later: at > keptAt})
			}
			continue
		}
		out, keptAt = append(out, e), at
	}
	return out, shadows, rows.Err()
}

// Same says whether two rows hold the same event, byte for byte as recorded.
func Same(a, b *schemas.Event) bool {
	return string(a.AppendJSON(nil)) == string(b.AppendJSON(nil))
}
