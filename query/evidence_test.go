package query

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// trailColumns are the columns a trail writes (the table may have more).
const trailColumns = "date, time, time_us, id, type, code, session_id, seq, resource, identity_sub, identity_name, identity_issuer, identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash, payload, stream_seq, stream_index"

// names are the identities' names in the trail's events (the others have none: a token
// without a name claim, or events from before names; reports show their subject).
var names = map[string]string{"ev-dba": "dba@example.com"}

// shown is how reports name an identity: its name, or its subject without one.
func shown(who string) string {
	if n := names[who]; n != "" {
		return n
	}
	return who
}

// trail writes events into the store as ingest would, one session at a time.
type trail struct {
	t   *testing.T
	b   driver.Batch
	seq map[string]uint64
}

func (tr *trail) add(session, resource, who string, at time.Time, p schemas.Payload) {
	tr.t.Helper()
	tr.seq[session]++
	typ := p.EventType()
	id := session + "-" + itoa(tr.seq[session])
	require.NoError(tr.t, tr.b.Append(at, at, uint64(at.UnixMicro()), id, typ, schemas.Codes[typ], session, tr.seq[session], resource,
		who, names[who], "iss", []string{}, "human", "", uint64(1), "", "", string(p.AppendJSON(nil)), uint64(0), uint32(0)))
}

// rawAdd writes an event whose payload is given as text (as an older gateway wrote it).
func (tr *trail) rawAdd(session, resource, who, typ string, at time.Time, payload string) {
	tr.t.Helper()
	tr.seq[session]++
	id := session + "-" + itoa(tr.seq[session])
	require.NoError(tr.t, tr.b.Append(at, at, uint64(at.UnixMicro()), id, typ, schemas.Codes[typ], session, tr.seq[session], resource,
		who, "", "iss", []string{}, "human", "", uint64(1), "", "", payload, uint64(0), uint32(0)))
}

// Each report names every outcome as itself, checked field by field against a trail that
// holds one of each: allowed, masked, denied, held and approved (hold and fail-fast), held
// and denied, expired, cancelled, pending, held without an outcome, no decision; sessions
// revoked, ended by an expired grant and by an expired token; grants created, revoked and
// expired, in today's events and as older gateways recorded them.
func TestEvidenceReportsNameEveryOutcome(t *testing.T) {
	ctx := context.Background()
	conn := startStore(t)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO gh.events ("+trailColumns+")")
	require.NoError(t, err)
	tr := &trail{t: t, b: b, seq: map[string]uint64{}}
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	labels := []string{"env=dev", "team=orders"}

	// ev-dba's session: one statement per outcome.
	s1 := "s1"
	stmt := func(s int, qid uint64, d *schemas.Decision, kinds ...string) {
		tr.add(s1, "demo", "ev-dba", at(s), &schemas.DbQuery{QueryID: qid, SQL: "q", Protocol: "simple"})
		if d != nil {
			d.QueryID, d.Kinds = qid, kinds
			tr.add(s1, "demo", "ev-dba", at(s), d)
		}
	}
	held := func(rule string) *schemas.Decision {
		return &schemas.Decision{Effect: "require_approval", Policy: "p", Rule: rule, Reason: "needs a second pair of eyes", Fingerprint: "f-" + rule}
	}
	tr.add(s1, "demo", "ev-dba", at(0), &schemas.SessionStart{Labels: labels, Protocol: "postgres", AuditMode: "strict"})
	stmt(1, 1, &schemas.Decision{Effect: "allow", Rule: "dba-anything"}, "select")
	stmt(2, 2, &schemas.Decision{Effect: "mask", Rule: "masked"}, "select")
	stmt(3, 3, &schemas.Decision{Effect: "deny", Policy: "demo-baseline", Rule: "no-drop-database", Reason: "never", Fingerprint: "f-drop"}, "drop_database")
	stmt(4, 4, held("approve-me"), "update")
	tr.add(s1, "demo", "ev-dba", at(4), &schemas.ApprovalRequested{ApprovalID: "a4", Kind: "statement", QueryID: 4, Mode: "hold"})
	tr.add(s1, "demo", "ev-dba", at(11), &schemas.ApprovalDecided{ApprovalID: "a4", QueryID: 4, Decision: "approve", By: "approver-1", Outcome: "approved", Approvals: 1})
	stmt(12, 5, held("deny-me"), "update")
	tr.add(s1, "demo", "ev-dba", at(12), &schemas.ApprovalRequested{ApprovalID: "a5", Kind: "statement", QueryID: 5, Mode: "hold"})
	tr.add(s1, "demo", "ev-dba", at(13), &schemas.ApprovalDecided{ApprovalID: "a5", QueryID: 5, Decision: "deny", By: "approver-1", Reason: "not during the freeze", Outcome: "denied"})
	stmt(14, 6, held("expire-me"), "insert")
	tr.add(s1, "demo", "ev-dba", at(14), &schemas.ApprovalRequested{ApprovalID: "a6", Kind: "statement", QueryID: 6, Mode: "hold"})
	tr.add(s1, "demo", "ev-dba", at(15), &schemas.ApprovalExpired{ApprovalID: "a6", QueryID: 6, Deadline: at(15)})
	stmt(16, 7, held("cancel-me"), "update")
	tr.add(s1, "demo", "ev-dba", at(16), &schemas.ApprovalRequested{ApprovalID: "a7", Kind: "statement", QueryID: 7, Mode: "hold"})
	tr.add(s1, "demo", "ev-dba", at(17), &schemas.ApprovalCancelled{ApprovalID: "a7", QueryID: 7, Reason: "cancel_request"})
	stmt(18, 8, held("fail-fast"), "delete")
	tr.add(s1, "demo", "ev-dba", at(18), &schemas.ApprovalRequested{ApprovalID: "a8", Kind: "statement", QueryID: 8, Mode: "fail_fast"})
	stmt(19, 9, held("fail-fast"), "delete") // run again while a8 is pending
	stmt(50, 10, held("fail-fast"), "delete")
	tr.add(s1, "demo", "ev-dba", at(50), &schemas.ApprovalUsed{ApprovalID: "a8", SessionID: s1, QueryID: 10, ApprovedBy: []string{"approver-2", "approver-3"},
		RequestedAt: at(18).Add(500 * time.Millisecond).Format(time.RFC3339Nano), ApprovedAt: at(48).Add(600 * time.Millisecond).Format(time.RFC3339Nano)})
	stmt(51, 11, nil) // an unknown portal
	tr.add(s1, "demo", "ev-dba", at(52), &schemas.SessionTerminated{Cause: "revoked", Reason: "INC-7", Revocation: "session:s1", By: "admin"})
	tr.add(s1, "demo", "ev-dba", at(52), &schemas.SessionEnd{Reason: "revoked", Statements: 11})

	// ev-svc: a masked read in a session its expired grant ended, one ended by its token,
	// and a held statement recorded before approval events named their statement.
	tr.add("s2", "demo", "ev-svc", at(20), &schemas.SessionStart{Labels: labels, Protocol: "postgres"})
	tr.add("s2", "demo", "ev-svc", at(21), &schemas.DbQuery{QueryID: 1, SQL: "q"})
	tr.add("s2", "demo", "ev-svc", at(21), &schemas.Decision{QueryID: 1, Effect: "mask"})
	tr.add("s2", "demo", "ev-svc", at(22), &schemas.SessionTerminated{Cause: "revoked", Reason: "grant expired", Revocation: "grant:g1", By: "gatehouse"})
	tr.add("s2", "demo", "ev-svc", at(22), &schemas.SessionEnd{Reason: "revoked"})
	tr.add("s3", "demo", "ev-svc", at(23), &schemas.SessionStart{Labels: labels})
	tr.add("s3", "demo", "ev-svc", at(24), &schemas.DbQuery{QueryID: 1, SQL: "q"})
	tr.add("s3", "demo", "ev-svc", at(24), &schemas.Decision{QueryID: 1, Effect: "require_approval", Rule: "old", Kinds: []string{"update"}})
	tr.rawAdd("s3", "demo", "ev-svc", schemas.TypeApprovalRequested, at(24), `{"approval_id":"a-old","kind":"statement","approvers":["x"],"required":1,"deadline":"2026-03-02T11:00:00Z","mode":"hold"}`)
	tr.rawAdd("s3", "demo", "ev-svc", schemas.TypeApprovalDecided, at(25), `{"approval_id":"a-old","decision":"approve","by":"approver-1","via":"cli","outcome":"approved","approvals":1}`)
	tr.add("s3", "demo", "ev-svc", at(26), &schemas.SessionTerminated{Cause: "token_expired"})
	tr.add("s3", "demo", "ev-svc", at(26), &schemas.SessionEnd{Reason: "token_expired"})
	// Outside the range: not counted.
	tr.add("s9", "demo", "ev-svc", t0.Add(-48*time.Hour), &schemas.SessionStart{Labels: labels})

	// Grants: created, expired, revoked; and as an older gateway recorded a revocation
	// (grant.expired before the expiry, no expires) and an expiry (no expires).
	cfg := func(s int, who string, p schemas.Payload) { tr.add("c"+itoa(uint64(s)), "_config", who, at(s), p) }
	e1, e2, e3, e4 := at(30), t0.Add(8*time.Hour), t0.Add(8*time.Hour), at(33)
	cfg(27, "ev-svc", &schemas.GrantCreated{GrantID: "g1", Resource: "demo", Role: "dba", Expires: e1, ApprovedBy: []string{"approver-1"}, Reason: "INC-1"})
	cfg(28, "ev-svc", &schemas.GrantCreated{GrantID: "g2", Resource: "demo", Role: "dba", Expires: e2, ApprovedBy: []string{"approver-1", "approver-2"}, Reason: "INC-2"})
	cfg(29, "admin", &schemas.Revocation{Kind: "grant", Value: "g2", Reason: "left the team"})
	cfg(29, "ev-svc", &schemas.GrantRevoked{GrantID: "g2", Resource: "demo", Role: "dba", Expires: e2, By: "admin", Reason: "left the team"})
	cfg(31, "ev-svc", &schemas.GrantExpired{GrantID: "g1", Resource: "demo", Role: "dba", Expires: e1, EndedSessions: true})
	cfg(32, "ev-old", &schemas.GrantCreated{GrantID: "g3", Resource: "demo", Role: "dba", Expires: e3, ApprovedBy: []string{"approver-1"}, Reason: "INC-3"})
	cfg(32, "ev-old", &schemas.GrantCreated{GrantID: "g4", Resource: "demo", Role: "dba", Expires: e4, ApprovedBy: []string{"approver-1"}, Reason: "INC-4"})
	cfg(33, "admin", &schemas.Revocation{Kind: "grant", Value: "g3", Reason: "old revoke"})
	tr.rawAdd("c34", "_config", "ev-old", schemas.TypeGrantExpired, at(34), `{"grant_id":"g3","resource":"demo","role":"dba","ended_sessions":true}`)
	tr.rawAdd("c35", "_config", "ev-old", schemas.TypeGrantExpired, at(35), `{"grant_id":"g4","resource":"demo","role":"dba","ended_sessions":false}`)
	require.NoError(t, b.Send())
	// Statement 1 and its decision stored twice (an insert retried): counted once.
	require.NoError(t, conn.Exec(ctx, "INSERT INTO gh.events ("+trailColumns+") SELECT "+trailColumns+" FROM gh.events WHERE session_id = 's1' AND seq IN (2, 3)"))

	a := New(conn, "gh", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	since, until := t0.Add(-time.Hour).Format(time.RFC3339), t0.Add(time.Hour).Format(time.RFC3339)
	report := func(kind string, extra ...string) (Coverage, []map[string]string) {
		t.Helper()
		var out struct {
			Coverage
			Columns []string            `json:"columns"`
			Rows    []map[string]string `json:"rows"`
		}
		q := "since=" + since + "&until=" + until + "&format=json"
		if len(extra) > 0 {
			q += "&" + strings.Join(extra, "&")
		}
		code, body := call(t, a, kind, q)
		require.Equal(t, http.StatusOK, code, body)
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		require.Equal(t, evidenceReports[kind].columns, out.Columns)
		for _, r := range out.Rows {
			require.Len(t, r, len(out.Columns))
		}
		return out.Coverage, out.Rows
	}
	ts := func(s int) string { return at(s).Format("2006-01-02 15:04:05") }

	cov, rows := report("access")
	require.Equal(t, t0.Add(-time.Hour), cov.Since)
	require.Equal(t, t0.Add(time.Hour), cov.Until)
	require.False(t, cov.SinceDefault || cov.UntilDefault)
	require.Nil(t, cov.Filters.Label)
	require.Equal(t, []map[string]string{
		{"identity": "dba@example.com", "subject": "ev-dba", "on_behalf_of": "", "resource": "demo", "sessions": "1", "statements": "11", "allowed": "1", "masked": "1",
			"denied": "1", "held": "7", "approved": "2", "approval_denied": "1", "approval_expired": "1", "approval_cancelled": "1",
			"approval_pending": "1", "held_no_outcome": "1", "no_decision": "1", "sessions_revoked": "1", "sessions_grant_expired": "0",
			"sessions_token_expired": "0", "sessions_ended_other": "0", "first": ts(0), "last": ts(52)},
		{"identity": "ev-svc", "subject": "ev-svc", "on_behalf_of": "", "resource": "demo", "sessions": "2", "statements": "2", "allowed": "0", "masked": "1",
			"denied": "0", "held": "1", "approved": "0", "approval_denied": "0", "approval_expired": "0", "approval_cancelled": "0",
			"approval_pending": "0", "held_no_outcome": "1", "no_decision": "0", "sessions_revoked": "0", "sessions_grant_expired": "1",
			"sessions_token_expired": "1", "sessions_ended_other": "0", "first": ts(20), "last": ts(26)},
	}, rows)

	_, rows = report("denials")
	denial := func(s int, session, who, rule, outcome, approval, by, why string) map[string]string {
		effect, fp, policy, reason := "require_approval", "f-"+rule, "p", "needs a second pair of eyes"
		if outcome == "denied" {
			effect, fp, policy, reason = "deny", "f-drop", "demo-baseline", "never"
		}
		if session == "s3" {
			fp, policy, reason = "", "", ""
		}
		return map[string]string{"time": ts(s), "identity": shown(who), "subject": who, "resource": "demo", "session": session, "effect": effect, "outcome": outcome,
			"policy": policy, "rule": rule, "reason": reason, "fingerprint": fp, "approval": approval, "denied_by": by, "denial_reason": why}
	}
	require.Equal(t, []map[string]string{
		denial(3, s1, "ev-dba", "no-drop-database", "denied", "", "", ""),
		denial(12, s1, "ev-dba", "deny-me", "approval_denied", "a5", "approver-1", "not during the freeze"),
		denial(14, s1, "ev-dba", "expire-me", "approval_expired", "a6", "", ""),
		denial(16, s1, "ev-dba", "cancel-me", "approval_cancelled", "a7", "", ""),
		denial(18, s1, "ev-dba", "fail-fast", "approval_pending", "a8", "", ""),
		denial(19, s1, "ev-dba", "fail-fast", "held_no_outcome", "", "", ""),
		denial(24, "s3", "ev-svc", "old", "held_no_outcome", "", "", ""),
	}, rows)

	cov, rows = report("privileged", "label=env%3Ddev")
	require.Equal(t, &LabelFilter{Label: "env=dev", Resources: []string{"demo"}, InUse: []string{"env=dev", "team=orders"}}, cov.Filters.Label)
	priv := func(s int, session, who, kinds, effect, outcome, rule, approval, by, secs string) map[string]string {
		return map[string]string{"time": ts(s), "identity": shown(who), "subject": who, "resource": "demo", "session": session, "kinds": kinds, "effect": effect,
			"outcome": outcome, "rule": rule, "approval": approval, "approved_by": by, "seconds_to_approve": secs}
	}
	require.Equal(t, []map[string]string{
		priv(3, s1, "ev-dba", `["drop_database"]`, "deny", "denied", "no-drop-database", "", "", ""),
		priv(4, s1, "ev-dba", `["update"]`, "require_approval", "approved", "approve-me", "a4", "approver-1", "7"),
		priv(12, s1, "ev-dba", `["update"]`, "require_approval", "approval_denied", "deny-me", "a5", "", ""),
		priv(14, s1, "ev-dba", `["insert"]`, "require_approval", "approval_expired", "expire-me", "a6", "", ""),
		priv(16, s1, "ev-dba", `["update"]`, "require_approval", "approval_cancelled", "cancel-me", "a7", "", ""),
		priv(18, s1, "ev-dba", `["delete"]`, "require_approval", "approval_pending", "fail-fast", "a8", "", ""),
		priv(19, s1, "ev-dba", `["delete"]`, "require_approval", "held_no_outcome", "fail-fast", "", "", ""),
		priv(24, "s3", "ev-svc", `["update"]`, "require_approval", "held_no_outcome", "old", "", "", ""),
		priv(50, s1, "ev-dba", `["delete"]`, "require_approval", "approved", "fail-fast", "a8", "approver-2 approver-3", "30"),
	}, rows)
	// The default label matches nothing here, and says so.
	cov, rows = report("privileged")
	require.Empty(t, rows)
	require.Equal(t, &LabelFilter{Label: "env=production", Default: true, Resources: []string{}, InUse: []string{"env=dev", "team=orders"}}, cov.Filters.Label)
	require.Contains(t, cov.Summary(), "label env=production (the default; --label to change): no resource with a session in this range carries it; labels in use in this range: env=dev, team=orders; 0 row(s)")

	_, rows = report("grants")
	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	grant := func(s int, event, id, who, expires, approvedBy, reason, revokedBy, revokeReason, ended string) map[string]string {
		return map[string]string{"time": ts(s), "event": event, "grant": id, "identity": shown(who), "subject": who, "resource": "demo", "role": "dba", "expires": expires,
			"approved_by": approvedBy, "reason": reason, "revoked_by": revokedBy, "revoke_reason": revokeReason, "ended_sessions": ended}
	}
	require.Equal(t, []map[string]string{
		grant(27, "grant.created", "g1", "ev-svc", rfc(e1), "approver-1", "INC-1", "", "", ""),
		grant(28, "grant.created", "g2", "ev-svc", rfc(e2), "approver-1 approver-2", "INC-2", "", "", ""),
		grant(29, "grant.revoked", "g2", "ev-svc", rfc(e2), "", "", "admin", "left the team", "true"),
		grant(31, "grant.expired", "g1", "ev-svc", rfc(e1), "", "", "", "", "true"),
		grant(32, "grant.created", "g3", "ev-old", rfc(e3), "approver-1", "INC-3", "", "", ""),
		grant(32, "grant.created", "g4", "ev-old", rfc(e4), "approver-1", "INC-4", "", "", ""),
		grant(34, "grant.revoked", "g3", "ev-old", rfc(e3), "", "", "admin", "old revoke", "true"),
		grant(35, "grant.expired", "g4", "ev-old", rfc(e4), "", "", "", "", "false"),
	}, rows)

	// CSV: the same rows, the coverage in a header, nothing else in the body.
	code, body := callRaw(t, a, "access", "since="+since+"&until="+until+"&format=csv")
	require.Equal(t, http.StatusOK, code.Code, body)
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 3)
	require.Equal(t, evidenceReports["access"].columns, records[0])
	var hc Coverage
	require.NoError(t, json.Unmarshal([]byte(code.Header().Get(HeaderCoverage)), &hc))
	require.Equal(t, "access", hc.Kind)
	require.Equal(t, 2, hc.RowCount)
	require.Equal(t, t0.Add(-time.Hour), hc.Since)

	// Bad input is refused with the reason.
	c, body := call(t, a, "privileged", "label=production")
	require.Equal(t, http.StatusBadRequest, c)
	require.Contains(t, body, "is not key=value")
	c, body = call(t, a, "access", "since="+until+"&until="+since)
	require.Equal(t, http.StatusBadRequest, c)
	require.Contains(t, body, "must be before until")
}

// call runs GET /api/v1/evidence/kind?query and returns the status and body.
func call(t *testing.T, a *API, kind, query string) (int, string) {
	rec, body := callRaw(t, a, kind, query)
	return rec.Code, body
}

func callRaw(t *testing.T, a *API, kind, query string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/evidence/"+kind+"?"+query, nil), rec)
	c.SetParamNames("kind")
	c.SetParamValues(kind)
	if err := a.evidence(c); err != nil {
		e.HTTPErrorHandler(err, c)
	}
	return rec, rec.Body.String()
}
