package ingest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/auditstore"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/seal"
)

// Sweeper ends the sessions that a gateway process left open when it died (kill -9, a
// crash, a lost machine): a session whose session.start names a gateway whose key is gone
// from gh_gateways, and that has no session.end, gets one with reason gateway_lost and the
// last sequence number the trail has, chained after its last event and sealed (when this
// process holds the audit signing key). It sweeps only once ingest has caught up with
// GH_AUDIT, so that the end follows the last event the gateway published.
//
// A gateway that was only cut off (a partition longer than audit.gateway_timeout), or
// whose restart publishes what its spool held, may send events past that end: a fork.
// When its events there are signed (its own seal, its restart's attestation) they
// supersede the sweeper's end (seal.Supersede) and the session is open again — ended once
// more after its new last event if the gateway is gone. Events past the end that nothing
// signs leave it standing (verify reports them).
type Sweeper struct {
	CH       driver.Conn
	Database string
	JS       jetstream.JetStream
	Gateways jetstream.KeyValue
	Key      *seal.Key // nil: the ended sessions are not sealed
	// Keys are the public keys whose seals and attestations prove a gateway's events (the
	// audit key and audit.verify_keys): only a branch they sign supersedes an end.
	Keys     map[string]ed25519.PublicKey
	Interval time.Duration
	// Window bounds how far back sessions are looked at (by their start); default 7 days.
	Window time.Duration
	Log    *slog.Logger

	// settled are forked sessions found ended (or not to be reopened), by the rows they had
	// then: read again only once rows come or go.
	settled map[string]uint64
}

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.Log.Warn("sweep of cut sessions failed", "err", err)
		case n > 0:
			s.Log.Info("sessions cut by a lost gateway were ended", "sessions", n)
		}
	}
}

// Sweep ends the cut sessions it finds now and returns how many.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	cons, err := s.JS.Consumer(ctx, bus.StreamAudit, ConsumerName)
	if err != nil {
		return 0, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	if ci.NumPending > 0 || ci.NumAckPending > 0 {
		return 0, nil // not caught up: the cut sessions' last events may still be on their way
	}
	open, err := OpenSessions(ctx, s.CH, s.Database, s.window())
	if err != nil {
		return 0, err
	}
	reopened, err := s.reopened(ctx)
	if err != nil {
		return 0, err
	}
	open = append(open, reopened...)
	n := 0
	for _, o := range open {
		if o.Gateway == "" {
			continue // from before gateways were named: verify reports it
		}
		alive, err := bus.Alive(ctx, s.Gateways, o.Gateway)
		if err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			s.Log.Warn("cannot tell whether a session's gateway is alive; left open this round", "session", o.Session, "gateway", o.Gateway, "err", err)
			continue
		}
		if alive {
			continue
		}
		ended, err := s.end(ctx, o)
		if err != nil {
			return n, fmt.Errorf("end session %s: %w", o.Session, err)
		}
		if ended {
			n++
		}
	}
	return n, nil
}

func (s *Sweeper) window() time.Duration {
	if s.Window > 0 {
		return s.Window
	}
	return 7 * 24 * time.Hour
}

// OpenSession is a session with a session.start and no session.end in the store.
type OpenSession struct {
	Session string
	Gateway string
	Last    schemas.Event // the session's last event in the store
}

// OpenSessions lists the sessions started within window that have no session.end, with
// their last event. GLOBAL NOT IN: on a cluster, events is a Distributed table, and a
// plain IN over it inside a query on it is refused (distributed_product_mode); GLOBAL
// runs the subquery once and gives its set to every shard (on one server it is a plain IN).
func OpenSessions(ctx context.Context, ch driver.Conn, db string, window time.Duration) ([]OpenSession, error) {
	since := uint64(time.Now().Add(-window).UnixMicro())
	rows, err := ch.Query(ctx, `SELECT session_id, argMin(payload, stream_seq) FROM `+db+`.events
		WHERE type = ? AND time_us >= ? AND session_id GLOBAL NOT IN (SELECT session_id FROM `+db+`.events WHERE type = ? AND time_us >= ?)
		GROUP BY session_id LIMIT 10000`, schemas.TypeSessionStart, since, schemas.TypeSessionEnd, since)
	if err != nil {
		return nil, err
	}
	var out []OpenSession
	for rows.Next() {
		var o OpenSession
		var payload string
		if err := rows.Scan(&o.Session, &payload); err != nil {
			rows.Close()
			return nil, err
		}
		var start schemas.SessionStart
		_ = json.Unmarshal([]byte(payload), &start)
		o.Gateway = start.Gateway
		out = append(out, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		row := ch.QueryRow(ctx, `SELECT id, type, code, time_us, session_id, seq, resource, identity_sub, identity_name, identity_issuer,
			identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash
			FROM `+db+`.events FINAL WHERE session_id = ? ORDER BY seq DESC LIMIT 1`, out[i].Session)
		e := &out[i].Last
		var us uint64
		if err := row.Scan(&e.ID, &e.Type, &e.Code, &us, &e.SessionID, &e.Seq, &e.Resource, &e.Identity.Subject, &e.Identity.Name, &e.Identity.Issuer,
			&e.Identity.Groups, &e.Identity.Kind, &e.Identity.OnBehalfOf, &e.PolicyRevision, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		if len(e.Identity.Groups) == 0 {
			e.Identity.Groups = nil
		}
		e.Time = time.UnixMicro(int64(us)).UTC()
	}
	return out, nil
}

// ForkedSessions lists the sessions started within window that have an event of their own
// at or past one of their ends: where a gateway's events met an end the sweeper recorded
// (or anything else wrote there). Whether the gateway's branch wins is for
// seal.Supersede to say, on the session's events.
func ForkedSessions(ctx context.Context, ch driver.Conn, db string, window time.Duration) (map[string]uint64, error) {
	since := uint64(time.Now().Add(-window).UnixMicro())
	rows, err := ch.Query(ctx, `SELECT session_id, count() FROM `+db+`.events
		WHERE time_us >= ? AND session_id GLOBAL IN (SELECT session_id FROM `+db+`.events WHERE type = ? AND time_us >= ?)
		GROUP BY session_id
		HAVING countIf(type = ?) > 0 AND maxIf(seq, type NOT IN (?, ?, ?)) >= minIf(seq, type = ?)
		LIMIT 10000`, since, schemas.TypeSessionEnd, since,
		schemas.TypeSessionStart, schemas.TypeSessionEnd, schemas.TypeSessionSealed, schemas.TypeSessionAttested, schemas.TypeSessionEnd)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{} // session -> its rows
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// reopened are the forked sessions whose gateway's signed events superseded the sweeper's
// end, and that no end closes any more: open again, with their last event.
func (s *Sweeper) reopened(ctx context.Context) ([]OpenSession, error) {
	forked, err := ForkedSessions(ctx, s.CH, s.Database, s.window())
	if err != nil {
		return nil, err
	}
	if s.settled == nil {
		s.settled = map[string]uint64{}
	}
	for id := range s.settled {
		if _, ok := forked[id]; !ok {
			delete(s.settled, id) // out of the window
		}
	}
	var out []OpenSession
	for id, rows := range forked {
		if n, ok := s.settled[id]; ok && n == rows {
			continue
		}
		evs, err := auditstore.ReadSession(ctx, s.CH, s.Database, id)
		if err != nil {
			return nil, err
		}
		var gateway string
		for i := range evs {
			var st schemas.SessionStart
			if evs[i].Type == schemas.TypeSessionStart && evs[i].Decode(&st) == nil {
				gateway = st.Gateway
			}
		}
		var aliveErr error
		pending := false // the answer depends on whether the gateway lives: ask again next time
		kept, sup, problems := seal.Supersede(id, evs, s.Keys, func() bool {
			pending = true
			ok, err := bus.Alive(ctx, s.Gateways, gateway)
			aliveErr = err
			return ok || err != nil // unsure: treat as alive (not ended by us now)
		})
		if aliveErr != nil {
			return nil, aliveErr
		}
		// Reopened only when the gateway's signature settled the fork, nothing unsigned
		// follows it, and no end is left; ended again right after the signed event, never
		// after anything someone without the key appended.
		if len(sup) == 0 || len(problems) > 0 || slices.ContainsFunc(kept, func(e schemas.Event) bool { return e.Type == schemas.TypeSessionEnd }) {
			if len(sup) > 0 || !pending {
				s.settled[id] = rows // nothing changes that until rows come or go
			}
			continue
		}
		signed := sup[len(sup)-1]
		for _, x := range sup {
			if x.Signed > signed.Signed {
				signed = x
			}
		}
		i := slices.IndexFunc(kept, func(e schemas.Event) bool { return e.Seq == signed.Signed && e.Hash == signed.SignedHash })
		if i < 0 {
			continue
		}
		out = append(out, OpenSession{Session: id, Gateway: gateway, Last: kept[i]})
	}
	return out, nil
}

// end records session.end gateway_lost after the session's last event, and its seal; false
// when JetStream took the message as a duplicate (another sweeper ended it first — or
// someone published under its message id, which leaves the session open: verify reports
// it as cut, and the next sweep after the duplicate window ends it).
func (s *Sweeper) end(ctx context.Context, o OpenSession) (bool, error) {
	last := o.Last
	now := time.Now().UTC().Truncate(time.Microsecond)
	next := func(p schemas.Payload, prev *schemas.Event) (schemas.Event, error) {
		id, err := uuid.NewV7()
		if err != nil {
			return schemas.Event{}, err
		}
		e := schemas.Event{ID: id.String(), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: now, SessionID: last.SessionID,
			Seq: prev.Seq + 1, Resource: last.Resource, Identity: last.Identity, PolicyRevision: last.PolicyRevision, PrevHash: prev.Hash}
		if e.Payload, err = json.Marshal(p); err != nil {
			return e, err
		}
		e.Hash, err = e.ComputeHash()
		return e, err
	}
	end, err := next(&schemas.SessionEnd{Reason: seal.ReasonGatewayLost, LastSeq: last.Seq,
		Error: fmt.Sprintf("the gateway process %s serving the session stopped without ending it (crash, kill or lost machine); events it held and had not published are lost", o.Gateway)}, &last)
	if err != nil {
		return false, err
	}
	data := end.AppendJSON(nil)
	subject := bus.AuditSubject(last.Resource, last.SessionID, end.Type)
	if s.Key != nil {
		sealed, err := next(s.Key.Seal(last.SessionID, end.Seq, end.Hash), &end)
		if err != nil {
			return false, err
		}
		data = sealed.AppendJSON(append(data, '\n'))
		subject = bus.AuditSubject(last.Resource, last.SessionID, "batch")
	}
	m := nats.NewMsg(subject)
	m.Data = data
	// Several sweepers may find the same session: the duplicate window keeps one end. A
	// session ended again after its signed events has another id (another last event).
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("gateway-lost-%s-%d-%.16s", last.SessionID, last.Seq, last.Hash))
	ack, err := s.JS.PublishMsg(ctx, m)
	if err != nil {
		return false, err
	}
	if ack.Duplicate {
		s.Log.Warn("the end of a cut session was taken as a duplicate: ended by another sweeper, or its message id was used before", "session", last.SessionID, "last_seq", last.Seq)
		return false, nil
	}
	s.Log.Info("session cut by a lost gateway ended", "session", last.SessionID, "gateway", o.Gateway, "last_seq", last.Seq)
	return true, nil
}
