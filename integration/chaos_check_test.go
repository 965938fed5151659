package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
)

// The invariants every chaos run checks once the load has stopped, over everything it did.

// invariants is what the checks found.
type invariants struct {
	answered, sent                  int
	events, rows, ids, positions    int64
	positioned                      int64 // events outside the sessions with a superseded end (positions counts theirs)
	superseded                      int   // sessions whose sweeper's end their gateway's signed events superseded
	sessions, ended                 int
	reported                        map[string]int // verify's problems by kind
	incomplete                      int
	forwarded, forwardedUndecided   int
	httpSent, httpAnswered          int               // the HTTP clients' share of sent and answered
	sshSent, sshAnswered            int               // the SSH clients'
	backendReached                  int               // HTTP requests that reached the backend
	backendUndecided                int               // of them, without an allowing decision in the trail
	hostRan, hostUndecided          int               // SSH commands the host ran; of them, without an allowing decision
	latency                         map[string]string // answered statements' time to answer by kind of client: median, p90
	sinkMissing                     map[string]int
	sinkCaughtUp                    map[string]time.Duration // when each sink had every answered statement
	backlog                         map[string]string        // GH_AUDIT consumers' pending messages once the checks reach the sinks
	trailWait, verifyWait, sinkWait time.Duration
	failures                        []string
	notes                           []string
}

func (inv *invariants) fail(format string, args ...any) {
	inv.failures = append(inv.failures, fmt.Sprintf(format, args...))
}

// chaosStmt is a statement in the trail: its session and number there.
type chaosStmt struct {
	session string
	query   uint64
}

// chaosTrail is the trail in ClickHouse of the load's statements and HTTP requests.
type chaosTrail struct {
	byMarker map[string]chaosStmt          // "k-i" → statement
	kinds    map[chaosStmt]map[string]bool // event types present
	effect   map[chaosStmt]string          // the decision's effect
	status   map[chaosStmt]string          // db.query.done's (http.done's) status
}

var chaosResources = "resource IN ('demo', 'demo-strict', 'chaos-api', 'chaos-api-strict', 'chaos-host', 'chaos-host-strict')"

// chaosTrailTypes are the event types of a whole trail, by kind of client: a SQL
// statement's, an HTTP request's, an SSH command's.
var chaosTrailTypes = map[string][]string{
	"sql":  {schemas.TypeDbQuery, schemas.TypeDecision, schemas.TypeDbResultChunk, schemas.TypeDbQueryDone},
	"http": {schemas.TypeHttpRequest, schemas.TypeDecision, schemas.TypeHttpResponse, schemas.TypeHttpDone},
	"ssh":  {schemas.TypeSshRequest, schemas.TypeDecision, schemas.TypeSshIo, schemas.TypeSshExit},
}

func (c *chaosCluster) readTrail(ctx context.Context) (*chaosTrail, error) {
	tr := &chaosTrail{byMarker: map[string]chaosStmt{}, kinds: map[chaosStmt]map[string]bool{}, effect: map[chaosStmt]string{}, status: map[chaosStmt]string{}}
	rows, err := c.conn.Query(ctx, `SELECT session_id, type, payload FROM gatehouse.events FINAL
		WHERE `+chaosResources+` AND type IN ('db.query', 'decision', 'db.result.chunk', 'db.query.done', 'http.request', 'http.response', 'http.done',
			'ssh.request', 'ssh.io', 'ssh.exit')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var sess, typ, payload string
		if err := rows.Scan(&sess, &typ, &payload); err != nil {
			return nil, err
		}
		var p struct {
			QueryID uint64 `json:"query_id"`
			SQL     string `json:"sql"`
			Path    string `json:"path"`
			Command string `json:"command"`
			Effect  string `json:"effect"`
			Status  any    `json:"status"` // a string; http.response's is a number
		}
		if err := json.Unmarshal([]byte(payload), &p); err != nil {
			return nil, fmt.Errorf("%s event of session %s: %w", typ, sess, err)
		}
		s := chaosStmt{sess, p.QueryID}
		if tr.kinds[s] == nil {
			tr.kinds[s] = map[string]bool{}
		}
		tr.kinds[s][typ] = true
		switch typ {
		case schemas.TypeDbQuery, schemas.TypeHttpRequest, schemas.TypeSshRequest:
			if m := chaosMarker.FindStringSubmatch(p.SQL + p.Path + p.Command); m != nil {
				tr.byMarker[m[1]+"-"+m[2]] = s
			}
		case schemas.TypeDecision:
			tr.effect[s] = p.Effect
		case schemas.TypeDbQueryDone, schemas.TypeHttpDone:
			tr.status[s], _ = p.Status.(string)
		}
	}
	return tr, rows.Err()
}

// missing lists the answered statements whose trail is not whole.
func (tr *chaosTrail) missing(load *chaosLoad) []string {
	var out []string
	for _, lc := range load.clients {
		for _, r := range lc.snapshot() {
			if !r.ok {
				continue
			}
			s, ok := tr.byMarker[fmt.Sprintf("%d-%d", lc.k, r.i)]
			k := tr.kinds[s]
			whole := true
			for _, typ := range chaosTrailTypes[lc.kind] {
				whole = whole && k[typ]
			}
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("client %d (%s) statement %d: no %s", lc.k, lc.db, r.i, chaosTrailTypes[lc.kind][0]))
			case !whole:
				out = append(out, fmt.Sprintf("client %d (%s) statement %d (session %s query %d): only %v", lc.k, lc.db, r.i, s.session, s.query, k))
			}
		}
	}
	return out
}

// checkInvariants checks, after the load has stopped:
//   - every answered statement has db.query, decision, db.result.chunk and db.query.done
//     in ClickHouse, and every event is there once (count FINAL = distinct ids = distinct
//     positions);
//   - every statement forwarded to the database (db.query.done ok or error) has a decision
//     that allowed it;
//   - every session is ended and sealed, or reported by `gatehouse audit verify`, which
//     reports no broken chain and no answered statement as incomplete;
//   - every SIEM sink received every answered statement.
func checkInvariants(t *testing.T, c *chaosCluster, load *chaosLoad, faults []faultResult) *invariants {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inv := &invariants{reported: map[string]int{}, sinkMissing: map[string]int{}, sinkCaughtUp: map[string]time.Duration{}, latency: map[string]string{}}
	took := map[string][]time.Duration{}
	for _, lc := range load.clients {
		for _, r := range lc.snapshot() {
			if r.i >= 0 {
				inv.sent++
				switch lc.kind {
				case "http":
					inv.httpSent++
				case "ssh":
					inv.sshSent++
				}
			}
			if r.ok {
				took[lc.kind] = append(took[lc.kind], r.end.Sub(r.start))
				inv.answered++
				switch lc.kind {
				case "http":
					inv.httpAnswered++
				case "ssh":
					inv.sshAnswered++
				}
			}
		}
	}

	for kind, ds := range took {
		slices.Sort(ds)
		inv.latency[kind] = fmt.Sprintf("median %s, p90 %s", ds[len(ds)/2].Round(100*time.Microsecond), ds[len(ds)*9/10].Round(100*time.Microsecond))
	}

	// The trail of every answered statement.
	var tr *chaosTrail
	var missing []string
	inv.trailWait, _ = waitFor(2*time.Minute, func() bool {
		var err error
		if tr, err = c.readTrail(ctx); err != nil {
			missing = []string{err.Error()}
			return false
		}
		missing = tr.missing(load)
		return len(missing) == 0
	})
	if len(missing) > 0 {
		inv.fail("%d answered statements have no whole trail in ClickHouse, e.g. %v", len(missing), missing[:min(10, len(missing))])
	}
	if tr == nil {
		return inv
	}

	// Nothing forwarded without a decision that allowed it.
	for s, st := range tr.status {
		if st != "ok" && st != "error" {
			continue
		}
		inv.forwarded++
		if e := tr.effect[s]; e != "allow" && e != "mask" {
			inv.forwardedUndecided++
			if inv.forwardedUndecided <= 10 {
				inv.fail("session %s statement %d reached the database (%s) with decision %q", s.session, s.query, st, e)
			}
		}
	}

	// Nothing reached the HTTP backend without a decision that allowed it (seen from the
	// backend: what it received, whatever the trail says was forwarded).
	checkBackend(inv, c.backend, tr)
	checkHost(inv, c.sshLog, tr)

	// Sessions: ended and sealed, or reported.
	var v query.Verification
	verify := func() bool {
		var stdout, stderr strings.Builder
		code := cli.Main([]string{"audit", "verify", "--json", "--url", c.bases["query"], "--token", c.auditor}, &stdout, &stderr)
		if code != 0 && code != 1 {
			return false
		}
		v = query.Verification{}
		if json.Unmarshal([]byte(stdout.String()), &v) != nil {
			return false
		}
		for _, p := range v.Problems {
			if p.Kind != query.ProblemIncomplete {
				return false
			}
		}
		return true
	}
	// The sweeper ends the sessions of a killed proxy within the gateway timeout.
	inv.verifyWait, _ = waitFor(2*time.Minute, verify)
	reported := map[string]bool{}
	broken := 0
	for _, p := range v.Problems {
		inv.reported[p.Kind]++
		reported[p.Session] = true
		switch p.Kind {
		case query.ProblemIncomplete:
			inv.incomplete++
		case "cut", "unsealed":
			// reported: the invariant allows it; listed in the report
		default:
			if broken++; broken <= 20 {
				inv.fail("audit verify: %s in session %s at %d: %s", p.Kind, p.Session, p.Seq, p.Detail)
			}
		}
	}
	if broken > 20 {
		inv.fail("audit verify: %d more problems of a broken chain", broken-20)
	}
	// Exactly once. A session whose gateway outlived the sweeper's end (an outage past
	// audit.gateway_timeout) holds that end and its seal beside the gateway's own events at
	// the same positions: verify lists it as superseded and checks the gateway's chain in
	// its place (no duplicate may be reported there); positions are counted without them.
	superseded := map[string]bool{}
	var skip []string
	for _, p := range v.Superseded {
		if !superseded[p.Session] {
			superseded[p.Session] = true
			skip = append(skip, "'"+p.Session+"'")
		}
	}
	inv.superseded = len(skip)
	where := chaosResources
	if len(skip) > 0 {
		where += " AND session_id NOT IN (" + strings.Join(skip, ",") + ")"
	}
	inv.events = c.chCount(ctx, "SELECT count() FROM gatehouse.events FINAL WHERE "+chaosResources)
	inv.rows = c.chCount(ctx, "SELECT count() FROM gatehouse.events WHERE "+chaosResources)
	inv.ids = c.chCount(ctx, "SELECT uniqExact(id) FROM gatehouse.events WHERE "+chaosResources)
	inv.positions = c.chCount(ctx, "SELECT uniqExact(session_id, seq) FROM gatehouse.events WHERE "+where)
	inv.positioned = c.chCount(ctx, "SELECT count() FROM gatehouse.events FINAL WHERE "+where)
	if inv.events != inv.ids || inv.positioned != inv.positions {
		inv.fail("events not exactly once: %d after dedup (FINAL), %d distinct ids; outside the %d sessions with a superseded end, %d events and %d distinct (session, seq)",
			inv.events, inv.ids, len(skip), inv.positioned, inv.positions)
	}
	answeredStmt := map[chaosStmt]string{}
	for _, lc := range load.clients {
		for _, r := range lc.snapshot() {
			if r.ok {
				if s, ok := tr.byMarker[fmt.Sprintf("%d-%d", lc.k, r.i)]; ok {
					answeredStmt[s] = fmt.Sprintf("client %d statement %d", lc.k, r.i)
				}
			}
		}
	}
	for _, p := range v.Problems {
		if p.Kind == query.ProblemIncomplete {
			if a, ok := answeredStmt[chaosStmt{p.Session, p.Query}]; ok {
				inv.fail("audit verify reports %s (session %s statement %d) incomplete, yet its client had it answered", a, p.Session, p.Query)
			}
		}
	}
	rows, err := c.conn.Query(ctx, `SELECT session_id, countIf(type = 'session.end'), countIf(type = 'session.sealed')
		FROM gatehouse.events FINAL WHERE `+chaosResources+` GROUP BY session_id`)
	require.NoError(t, err)
	var open []string
	for rows.Next() {
		var sess string
		var ends, seals uint64
		require.NoError(t, rows.Scan(&sess, &ends, &seals))
		inv.sessions++
		if ends == 1 && seals == 1 || superseded[sess] && !reported[sess] && ends == seals && ends > 1 {
			inv.ended++ // (a superseded session: the gateway's own end and seal, and the sweeper's set aside)
			continue
		}
		if !reported[sess] {
			open = append(open, fmt.Sprintf("%s (ends %d, seals %d)", sess, ends, seals))
		}
	}
	require.NoError(t, rows.Err())
	rows.Close()
	if len(open) > 0 {
		sort.Strings(open)
		inv.fail("%d sessions are neither ended and sealed nor reported by audit verify: %v", len(open), open[:min(10, len(open))])
	}
	if n := inv.sessions - inv.ended; n > 0 {
		inv.notes = append(inv.notes, fmt.Sprintf("%d sessions not ended and sealed, all reported by audit verify", n))
	}

	if len(missing) > 0 {
		// Evidence for the report (after the session checks, which it would change): were
		// they stranded in the proxy's spool journal? A restart publishes what a previous
		// process left there.
		c.kill("proxy-postgres")
		c.start("proxy-postgres")
		var still []string
		waitFor(time.Minute, func() bool {
			t2, err := c.readTrail(ctx)
			if err != nil {
				return false
			}
			still = t2.missing(load)
			return len(still) == 0
		})
		inv.notes = append(inv.notes, fmt.Sprintf("after a kill -9 and restart of the proxy (which publishes its spool's journal), %d of the %d incomplete trails were whole", len(missing)-len(still), len(missing)))
	}

	// Every sink has every answered statement (at least once: a sink may repeat a batch).
	inv.backlog = c.consumerBacklog(ctx)
	sinksFrom := time.Now()
	// When were the statements a sink does not have yet answered? (Which fault's window.)
	for name, rx := range c.sinks {
		var first, last time.Time
		n := 0
		for _, lc := range load.clients {
			for _, r := range lc.snapshot() {
				if r.ok && !rx.has(lc.k, r.i) {
					n++
					if first.IsZero() || r.end.Before(first) {
						first = r.end
					}
					if r.end.After(last) {
						last = r.end
					}
				}
			}
		}
		if n > 0 {
			inv.notes = append(inv.notes, fmt.Sprintf("when the checks reached the sinks, %s lacked %d answered statements, answered %s", name, n, faultSpan(faults, first, last)))
		}
	}
	inv.sinkWait, _ = waitFor(3*time.Minute, func() bool {
		done := true
		for name, rx := range c.sinks {
			if _, ok := inv.sinkCaughtUp[name]; ok {
				continue
			}
			n := 0
			for _, lc := range load.clients {
				for _, r := range lc.snapshot() {
					if r.ok && !rx.has(lc.k, r.i) {
						n++
					}
				}
			}
			inv.sinkMissing[name] = n
			if n == 0 {
				inv.sinkCaughtUp[name] = time.Since(sinksFrom).Round(100 * time.Millisecond)
			}
			done = done && n == 0
		}
		return done
	})
	for name, rx := range c.sinks {
		if r := rx.refusals(); len(r) > 0 {
			inv.notes = append(inv.notes, fmt.Sprintf("the test's receiver of sink %s refused batches: %v", name, r))
		}
	}
	for name, n := range inv.sinkMissing {
		if n > 0 {
			inv.fail("sink %s never received %d answered statements", name, n)
		}
	}
	t.Logf("invariants: %d statements sent, %d answered (of them HTTP requests: %d sent, %d answered; SSH commands: %d sent, %d answered); %d events (%d rows before dedup, %d ids; %d events and %d positions outside sessions with a superseded end); %d forwarded, %d without an allowing decision; %d HTTP requests reached the backend, %d without an allowing decision; the SSH host ran %d commands, %d without an allowing decision; %d sessions, %d ended and sealed (%d of them after a superseded sweeper's end), verify reported %v; sinks missing %v; waits: trail %s, verify %s, sinks %s; time to answer: %v",
		inv.sent, inv.answered, inv.httpSent, inv.httpAnswered, inv.sshSent, inv.sshAnswered, inv.events, inv.rows, inv.ids, inv.positioned, inv.positions, inv.forwarded, inv.forwardedUndecided, inv.backendReached, inv.backendUndecided, inv.hostRan, inv.hostUndecided, inv.sessions, inv.ended, inv.superseded, inv.reported, inv.sinkMissing,
		inv.trailWait.Round(time.Millisecond), inv.verifyWait.Round(time.Millisecond), inv.sinkWait.Round(time.Millisecond), inv.latency)
	for _, f := range inv.failures {
		t.Logf("invariant broken: %s", f)
	}
	return inv
}

// consumerBacklog is what each GH_AUDIT consumer (ingest's, each sink's) has not yet
// taken or acknowledged, as JetStream counts it.
func (c *chaosCluster) consumerBacklog(ctx context.Context) map[string]string {
	out := map[string]string{}
	nc, err := nats.Connect(c.nats.directURL())
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	names := []string{ingest.ConsumerName}
	for name := range c.sinks {
		names = append(names, "sink-"+name)
	}
	for _, name := range names {
		cons, err := js.Consumer(ctx, bus.StreamAudit, name)
		if err != nil {
			out[name] = err.Error()
			continue
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			out[name] = err.Error()
			continue
		}
		out[name] = fmt.Sprintf("%d pending, %d awaiting ack", ci.NumPending, ci.NumAckPending)
	}
	return out
}

// faultSpan says when [first, last] was, relative to the faults.
func faultSpan(faults []faultResult, first, last time.Time) string {
	where := func(at time.Time) string {
		for i := len(faults) - 1; i >= 0; i-- {
			f := faults[i]
			if !f.injected.IsZero() && !at.Before(f.injected) {
				if at.Before(f.removed) {
					return fmt.Sprintf("%s into the fault %q", at.Sub(f.injected).Round(100*time.Millisecond), f.name)
				}
				return fmt.Sprintf("%s after the removal of %q", at.Sub(f.removed).Round(100*time.Millisecond), f.name)
			}
		}
		return "before the first fault"
	}
	return "from " + where(first) + " to " + where(last)
}
