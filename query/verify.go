package query

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/auditstore"
	"github.com/gatehouse/gatehouse/services/seal"
)

// maxVerifySessions bounds one verification request.
const maxVerifySessions = 100000

// Verification is the answer of GET /api/v1/audit/verify.
type Verification struct {
	Sessions int            `json:"sessions"`
	Events   int            `json:"events"`
	Problems []seal.Problem `json:"problems"`
	// Truncated are sessions whose oldest events were dropped by retention, as recorded in
	// the trail: explained, not problems.
	Truncated []seal.Problem `json:"truncated"`
	// Superseded are the sweeper's gateway_lost ends that the session's own gateway
	// overtook with later events it signed (it was cut off past audit.gateway_timeout and
	// sealed the session itself, or its restart published and attested its spool):
	// explained, not problems; the session's events are verified without them
	// (seal.Supersede).
	Superseded []seal.Problem `json:"superseded"`
	// What was covered: one session (Session), or every session with an event at or after
	// Since up to Until (when the check ran); SinceDefault says since was not given (the
	// last 24 hours).
	Session      string     `json:"session,omitempty"`
	Since        *time.Time `json:"since,omitempty"`
	Until        *time.Time `json:"until,omitempty"`
	SinceDefault bool       `json:"since_default,omitempty"`
}

// Covered says what the verification covered, in one line.
func (v *Verification) Covered() string {
	switch {
	case v.Session != "":
		return "covered: session " + v.Session
	case v.Since == nil || v.Until == nil:
		return "covered: not stated by this server"
	}
	s := fmt.Sprintf("covered: every session with events from %s to %s", v.Since.UTC().Format(time.RFC3339), v.Until.UTC().Format(time.RFC3339))
	if v.SinceDefault {
		s += " (the default: the last 24 hours; --since to look further back)"
	}
	return s
}

// DefaultVerifyRange is how far back verify looks when not told.
const DefaultVerifyRange = 24 * time.Hour

// SetVerifyKeys gives the public keys whose seals are accepted, by key id.
func (a *API) SetVerifyKeys(keys map[string]ed25519.PublicKey) { a.keys = keys }

// GatewayAlive reports whether the gateway process with a boot id is alive (gh_gateways).
type GatewayAlive func(ctx context.Context, gateway string) (bool, error)

// SetGatewayAlive lets verify tell a live session from one its gateway left cut.
func (a *API) SetGatewayAlive(f GatewayAlive) { a.alive = f }

// unnamedGatewayAfter is how long a session whose start names no gateway (recorded before
// gateways were named) may go without an end before verify reports it.
const unnamedGatewayAfter = 24 * time.Hour

// verify re-reads sessions from ClickHouse and checks their chains and seals:
// ?session=ID, or ?since=RFC3339 (default: the last 24 hours).
func (a *API) verify(c echo.Context) error {
	ctx := c.Request().Context()
	var sessions []string
	var covered Verification
	if id := c.QueryParam("session"); id != "" {
		sessions = []string{id}
		covered.Session = id
	} else {
		until := time.Now().UTC()
		since := until.Add(-DefaultVerifyRange)
		covered.SinceDefault = true
		if s := c.QueryParam("since"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("since: %q is not an RFC 3339 time", s))
			}
			since, covered.SinceDefault = t.UTC(), false
		}
		covered.Since, covered.Until = &since, &until
		rows, err := a.ch.Query(ctx, "SELECT DISTINCT session_id FROM "+a.db+".events WHERE time_us >= ? LIMIT ?", uint64(since.UnixMicro()), uint64(maxVerifySessions+1))
		if err != nil {
			return a.storeError(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return a.storeError(err)
			}
			sessions = append(sessions, s)
		}
		rows.Close()
		if len(sessions) > maxVerifySessions {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d sessions since %s: verify a shorter range", maxVerifySessions, since.Format(time.RFC3339)))
		}
	}
	v, err := VerifySessions(ctx, a.ch, a.db, sessions, a.keys, a.alive)
	if err != nil {
		return a.storeError(err)
	}
	v.Session, v.Since, v.Until, v.SinceDefault = covered.Session, covered.Since, covered.Until, covered.SinceDefault
	return c.JSON(http.StatusOK, v)
}

// VerifySessions re-reads sessions from the store and checks their chains and seals. The
// events of a session whose oldest month has been dropped by retention are gone on
// purpose: that is reported as "truncated", naming the retention run, not as missing.
//
// A session without a session.end is live while the gateway process its session.start
// names is (alive); once that process is gone, the session was cut and is reported until
// the sweeper ends it (gateway_lost). With alive nil, open sessions are not looked at.
func VerifySessions(ctx context.Context, ch driver.Conn, db string, sessions []string, keys map[string]ed25519.PublicKey, alive GatewayAlive) (Verification, error) {
	v := Verification{Problems: []seal.Problem{}, Truncated: []seal.Problem{}, Superseded: []seal.Problem{}}
	var dropped map[retainedKey]retainedBy
	for _, id := range sessions {
		evs, shadows, err := auditstore.ReadSessionShadows(ctx, ch, db, id)
		if err != nil {
			return v, err
		}
		for _, sh := range shadows {
			v.Problems = append(v.Problems, shadowProblem(id, sh))
		}
		if len(evs) == 0 {
			v.Problems = append(v.Problems, seal.Problem{Session: id, Kind: "missing", Detail: "no events for this session"})
			continue
		}
		v.Sessions++
		v.Events += len(evs)
		gatewayAlive := func() bool {
			gw := startOf(evs)
			if alive == nil || gw == nil || gw.Gateway == "" {
				return false
			}
			ok, err := alive(ctx, gw.Gateway)
			return err == nil && ok
		}
		evs, sup, bad := seal.Supersede(id, evs, keys, gatewayAlive)
		for _, s := range sup {
			v.Superseded = append(v.Superseded, s.Problem(id))
		}
		v.Problems = append(v.Problems, bad...)
		if len(evs) == 0 {
			v.Problems = append(v.Problems, seal.Problem{Session: id, Kind: "missing", Detail: "no event of the session's chain, only attestations"})
			continue
		}
		if alive != nil {
			p, err := cutSession(ctx, id, evs, alive)
			if err != nil {
				return v, err
			}
			if p != nil {
				v.Problems = append(v.Problems, *p)
			}
		}
		v.Problems = append(v.Problems, incompleteStatements(id, evs)...)
		for _, p := range seal.Verify(id, evs, keys) {
			if p.Kind != "missing" || p.Seq != 1 {
				v.Problems = append(v.Problems, p)
				continue
			}
			if dropped == nil {
				if dropped, err = droppedPartitions(ctx, ch, db); err != nil {
					return v, err
				}
			}
			by, ok := retainedBefore(dropped, evs[0].Resource, evs[0].Time)
			if !ok {
				v.Problems = append(v.Problems, p)
				continue
			}
			p.Kind = "truncated"
			p.Detail = fmt.Sprintf("events 1 to %d are gone with the older months of resource %s, dropped by retention (partition %d dropped %s by %s, keep %s)",
				evs[0].Seq-1, evs[0].Resource, by.month, by.at.UTC().Format(time.RFC3339), by.who, by.keep)
			v.Truncated = append(v.Truncated, p)
		}
	}
	return v, nil
}

type retainedKey struct {
	resource string
	month    uint32
}

type retainedBy struct {
	month uint32
	at    time.Time
	who   string
	keep  string
}

// droppedPartitions reads every retention run in the trail: which (resource, month)
// partitions were dropped, when and by whom.
func droppedPartitions(ctx context.Context, ch driver.Conn, db string) (map[retainedKey]retainedBy, error) {
	rows, err := ch.Query(ctx, "SELECT time, identity_sub, payload FROM "+db+".events WHERE resource = '_config' AND type = ?", schemas.TypeAuditRetention)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[retainedKey]retainedBy{}
	for rows.Next() {
		var at time.Time
		var who, payload string
		if err := rows.Scan(&at, &who, &payload); err != nil {
			return nil, err
		}
		var run schemas.AuditRetention
		if json.Unmarshal([]byte(payload), &run) != nil {
			continue // an unreadable record explains nothing
		}
		for _, d := range run.Dropped {
			out[retainedKey{d.Resource, d.Month}] = retainedBy{month: d.Month, at: at, who: who, keep: d.Keep}
		}
	}
	return out, rows.Err()
}

// retainedBefore finds a dropped partition of resource from a month before first's: the
// events before first went with it. (Retention drops the oldest months first, so only the
// start of a session can be gone this way.)
func retainedBefore(dropped map[retainedKey]retainedBy, resource string, first time.Time) (retainedBy, bool) {
	month := uint32(first.UTC().Year()*100 + int(first.UTC().Month()))
	var found retainedBy
	for k, by := range dropped {
		if k.resource == resource && k.month < month && by.month > found.month {
			found = by
		}
	}
	return found, found.month != 0
}

// startOf is the session.start of a session's events; nil when it is not there.
func startOf(evs []schemas.Event) *schemas.SessionStart {
	for i := range evs {
		if evs[i].Type == schemas.TypeSessionStart {
			var s schemas.SessionStart
			if evs[i].Decode(&s) == nil {
				return &s
			}
			return nil
		}
	}
	return nil
}

// cutSession reports a session that has no session.end and whose gateway is gone.
func cutSession(ctx context.Context, id string, evs []schemas.Event, alive GatewayAlive) (*seal.Problem, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	var start *schemas.SessionStart
	for i := range evs {
		switch evs[i].Type {
		case schemas.TypeSessionEnd:
			return nil, nil
		case schemas.TypeSessionStart:
			start = &schemas.SessionStart{}
			if err := evs[i].Decode(start); err != nil {
				start = nil
			}
		}
	}
	last := evs[len(evs)-1]
	if start == nil || evs[0].Resource == "_config" {
		return nil, nil // not a session of a proxy (control records), or its start is gone
	}
	if start.Gateway == "" {
		if time.Since(last.Time) < unnamedGatewayAfter {
			return nil, nil
		}
		return &seal.Problem{Session: id, Seq: last.Seq, Kind: "cut", Detail: fmt.Sprintf(
			"no session.end, and nothing since %s (the session names no gateway process to tell whether it still runs)", last.Time.Format(time.RFC3339))}, nil
	}
	ok, err := alive(ctx, start.Gateway)
	if err != nil || ok {
		return nil, err
	}
	return &seal.Problem{Session: id, Seq: last.Seq, Kind: "cut", Detail: fmt.Sprintf(
		"no session.end, and gateway process %s that served it is gone (crash?): its last event is %d at %s; the sweeper ends it as gateway_lost", start.Gateway, last.Seq, last.Time.Format(time.RFC3339))}, nil
}

// shadowProblem reports a row stored under a kept event's key with other content. A later
// publication is ignored by every session read (the first stored row wins), but it is a
// writer to GH_AUDIT trying to replace a recorded event, and reports that count rows as
// stored (evidence, charts) may count it; the same stream position twice is an alteration
// in the store itself.
func shadowProblem(session string, sh auditstore.Shadow) seal.Problem {
	if sh.Later {
		return seal.Problem{Session: session, Seq: sh.Seq, Kind: "shadowed", Detail: fmt.Sprintf(
			"event %s is stored again, later, under its id and position with other content: a publication that tried to replace it (the first stored is kept and read; the later row is ignored)", sh.ID)}
	}
	return seal.Problem{Session: session, Seq: sh.Seq, Kind: "altered", Detail: fmt.Sprintf(
		"event %s is stored twice from one stream position with different content: altered in the store", sh.ID)}
}
