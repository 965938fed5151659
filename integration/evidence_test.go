package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/approvals/grants"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/query"
)

// evidenceColumns are the evidence reports' columns, in order: the contract with the
// auditors' spreadsheets (docs/evidence.md).
var evidenceColumns = map[string][]string{
	"access": {"identity", "subject", "on_behalf_of", "resource", "sessions", "statements", "allowed", "masked", "denied",
		"held", "approved", "approval_denied", "approval_expired", "approval_cancelled", "approval_pending", "held_no_outcome",
		"no_decision", "sessions_revoked", "sessions_grant_expired", "sessions_token_expired", "sessions_ended_other", "first", "last"},
	"denials": {"time", "identity", "subject", "resource", "session", "effect", "outcome", "policy", "rule", "reason", "fingerprint",
		"approval", "denied_by", "denial_reason"},
	"privileged": {"time", "identity", "subject", "resource", "session", "kinds", "effect", "outcome", "rule", "approval", "approved_by",
		"seconds_to_approve"},
	"grants": {"time", "event", "grant", "identity", "subject", "resource", "role", "expires", "approved_by", "reason",
		"revoked_by", "revoke_reason", "ended_sessions"},
}

// evidencePolicy adds, to the demo's policies, inserts into orders held for 2 seconds and
// deletes from orders approved fail-fast, for the dba group.
const evidencePolicy = `  - name: evidence-exercise
    resources: [demo]
    rules:
      - name: order-inserts-need-approval
        effect: require_approval
        when: '"dba" in identity.groups && "insert" in request.sql.kinds && "public.orders" in request.sql.tables_written'
        reason: inserting orders needs an approval within 2s
        approval: {approvers: [approvers], timeout: 2s}
      - name: order-deletes-fail-fast
        effect: require_approval
        when: '"dba" in identity.groups && "delete" in request.sql.kinds && "public.orders" in request.sql.tables_written'
        reason: deleting orders needs an approval, asked for once
        approval: {approvers: [approvers], mode: fail_fast, window: 1m}
`

// TestEvidenceSaysWhatHappened produces every outcome in one exercise (allowed, masked,
// denied; held and approved, denied, expired, cancelled; fail-fast requested and then
// approved; a grant created and expired, one created and revoked; sessions revoked and
// ended by an expired grant) and checks each evidence report field by field against what
// was done, and that each report, verify, revocations and grants list say what they
// covered.
func TestEvidenceSaysWhatHappened(t *testing.T) {
	src, err := os.ReadFile("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfgText := string(src)
	cfgText = cfgText[:strings.Index(cfgText, "# Policy test cases")] // its catalog path is relative
	i := strings.Index(cfgText, "\ngrants:")
	require.Positive(t, i)
	cfgText = cfgText[:i+1] + evidencePolicy + cfgText[i+1:]
	cfgFile := filepath.Join(t.TempDir(), "gatehouse.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfgText), 0o600))
	g, _ := startAllInOne(t, cfgFile)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	began := time.Now().UTC().Truncate(time.Second).Add(-time.Second)
	svc := g.token(t, "ev-svc", "orders-readers")
	dba := g.token(t, "ev-dba", "dba")
	approver := g.token(t, "approver-1", "approvers")
	admin := g.token(t, "admin", "gatehouse-admins")
	auditor := g.token(t, "auditor", "auditors")
	gh := func(token string, args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append(args, "--url", g.api, "--token", token), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	connect := func(user, token string) *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=%s password=%s sslmode=disable", g.pgHost, g.pgPort, user, token))
		require.NoError(t, err)
		return c
	}
	sessionsOf := func(who string) []query.Session {
		var out struct {
			Sessions []query.Session `json:"sessions"`
		}
		require.NoError(t, g.cliJSON(t, auditor, &out, "sessions", "list", "--identity", who))
		return out.Sessions
	}
	// newSession waits for the session of who that is not one of known to be recorded.
	newSession := func(who string, known ...string) string {
		var id string
		require.Eventually(t, func() bool {
			for _, s := range sessionsOf(who) {
				if !strings.Contains(strings.Join(known, " "), s.ID) {
					id = s.ID
					return true
				}
			}
			return false
		}, 30*time.Second, 50*time.Millisecond, "no new session of %s recorded", who)
		return id
	}
	ended := func(who, id string) func() bool {
		return func() bool {
			for _, s := range sessionsOf(who) {
				if s.ID == id {
					return s.End != nil
				}
			}
			return false
		}
	}
	pendingFor := func(stmt string) approvals.Approval {
		var found approvals.Approval
		require.Eventually(t, func() bool {
			var out struct {
				Approvals []approvals.Approval `json:"approvals"`
			}
			require.NoError(t, g.cliJSON(t, approver, &out, "approvals", "list"))
			for _, a := range out.Approvals {
				if a.Request.Statement == stmt {
					found = a
					return true
				}
			}
			return false
		}, 20*time.Second, 20*time.Millisecond, "no pending approval for %q", stmt)
		return found
	}
	approvalID := func(err error) string {
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		return strings.TrimPrefix(pgErr.Detail, "approval ")
	}

	// ev-svc, session A: a masked read and a denied drop; then an admin revokes the session.
	a := connect("ev-svc", svc)
	r, err := a.Exec(ctx, "select card_number from customers where id = 2").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "************5559", string(r[0].Rows[0][0]))
	_, err = a.Exec(ctx, "drop table orders").ReadAll()
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42501", pgErr.Code)
	sessionA := newSession("ev-svc")
	_, errOut, code := gh(admin, "revoke", "--session", sessionA)
	require.Equal(t, 2, code, "revoke without --reason is a usage error")
	require.Contains(t, errOut, "revoke needs --reason")
	out, errOut, code := gh(admin, "revoke", "--session", sessionA, "--reason", "INC-9: end this session")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "revoked session "+sessionA+" until lifted")
	require.Eventually(t, ended("ev-svc", sessionA), 30*time.Second, 50*time.Millisecond, "the revoked session ends")
	a.Close(ctx)

	// ev-dba, session B: allowed; held and approved, denied, expired, cancelled.
	b := connect("ev-dba", dba)
	_, err = b.Exec(ctx, "select count(*) from orders").ReadAll()
	require.NoError(t, err)
	held := func(stmt string) (approvals.Approval, chan error) {
		done := make(chan error, 1)
		go func() { _, err := b.Exec(ctx, stmt).ReadAll(); done <- err }()
		return pendingFor(stmt), done
	}
	approvedStmt := "update customers set name = 'Grace (evidence)' where id = 3"
	apApproved, done := held(approvedStmt)
	_, errOut, code = gh(approver, "approvals", "approve", apApproved.ID, "--reason", "INC-10")
	require.Equal(t, 0, code, errOut)
	require.NoError(t, <-done)
	apDenied, done := held("update customers set name = 'Grace (denied)' where id = 3")
	_, errOut, code = gh(approver, "approvals", "deny", apDenied.ID, "--reason", "not during the freeze")
	require.Equal(t, 0, code, errOut)
	require.ErrorAs(t, <-done, &pgErr)
	require.Equal(t, "42501", pgErr.Code)
	_, err = b.Exec(ctx, "insert into orders (customer_id, item, amount) values (1, 'evidence timeout', 1)").ReadAll()
	apExpired := approvalID(err)
	require.Contains(t, err.Error(), "was not granted before its deadline")
	cancelled := "update customers set name = 'Grace (cancelled)' where id = 3"
	qctx, qcancel := context.WithCancel(ctx)
	done = make(chan error, 1)
	go func() { _, err := b.Exec(qctx, cancelled).ReadAll(); done <- err }()
	apCancelled := pendingFor(cancelled)
	qcancel()
	require.Error(t, <-done)
	require.Eventually(t, func() bool {
		var out struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		require.NoError(t, g.cliJSON(t, approver, &out, "approvals", "list", "--all"))
		for _, x := range out.Approvals {
			if x.ID == apCancelled.ID {
				return x.Status == approvals.Cancelled
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	b.Close(ctx)

	// ev-dba, session C: a fail-fast delete is refused with an approval requested; once
	// approved, the identical statement runs.
	c := connect("ev-dba", dba)
	del := "delete from orders where item = 'no such item (evidence)'"
	_, err = c.Exec(ctx, del).ReadAll()
	apFailFast := approvalID(err)
	_, errOut, code = gh(approver, "approvals", "approve", apFailFast)
	require.Equal(t, 0, code, errOut)
	_, err = c.Exec(ctx, del).ReadAll()
	require.NoError(t, err)
	c.Close(ctx)

	// ev-svc: a grant of dba for 5 seconds; session D reads in the clear under it (the reads
	// before the policy service sees the grant come back masked, and are counted so), and
	// ends at its expiry.
	grantOf := func(dur, reason string) string {
		out, errOut, code := gh(svc, "grants", "request", "--resource", "demo", "--role", "dba", "--for", dur, "--reason", reason)
		require.Equal(t, 0, code, errOut)
		id := strings.Fields(strings.SplitN(out, "approval ", 2)[1])[0]
		_, errOut, code = gh(approver, "approvals", "approve", id)
		require.Equal(t, 0, code, errOut)
		return id
	}
	listGrants := func(token string) ([]grants.Grant, string) {
		var stdout, stderr bytes.Buffer
		code := cli.Main([]string{"grants", "list", "--json", "--url", g.api, "--token", token}, &stdout, &stderr)
		require.Equal(t, 0, code, stderr.String())
		var out struct {
			Grants []grants.Grant `json:"grants"`
		}
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &out))
		return out.Grants, stderr.String()
	}
	inForce := func(token, id string) *grants.Grant {
		gs, _ := listGrants(token)
		for i := range gs {
			if gs[i].ID == id {
				return &gs[i]
			}
		}
		return nil
	}
	g1 := grantOf("5s", "INC-E1")
	var grant1 *grants.Grant
	require.Eventually(t, func() bool { grant1 = inForce(svc, g1); return grant1 != nil }, 20*time.Second, 20*time.Millisecond)
	d := connect("ev-svc", svc)
	maskedReads := 0
	require.Eventually(t, func() bool {
		r, err := d.Exec(ctx, "select card_number from customers where id = 2").ReadAll()
		require.NoError(t, err)
		if string(r[0].Rows[0][0]) == "5500005555555559" {
			return true
		}
		maskedReads++
		return false
	}, 5*time.Second, 20*time.Millisecond, "the grant never took effect")
	sessionD := newSession("ev-svc", sessionA)
	require.Eventually(t, ended("ev-svc", sessionD), 30*time.Second, 50*time.Millisecond, "the session that used the grant ends at its expiry")
	d.Close(ctx)

	// ev-svc: a grant for an hour, revoked by an admin. Meanwhile grants list says whose
	// grants it lists.
	g2 := grantOf("1h", "INC-E2")
	var grant2 *grants.Grant
	require.Eventually(t, func() bool { grant2 = inForce(svc, g2); return grant2 != nil }, 20*time.Second, 20*time.Millisecond)
	gs, note := listGrants(dba)
	require.Empty(t, gs)
	require.Equal(t, "grants in force for ev-dba only (yours; an admin token lists everyone's): 0\n", note)
	gs, note = listGrants(admin)
	require.Len(t, gs, 1)
	require.Equal(t, "every grant in force (an admin token): 1\n", note)
	_, errOut, code = gh(admin, "revoke", "--grant", g2, "--reason", "INC-E2 closed early")
	require.Equal(t, 0, code, errOut)
	require.Eventually(t, func() bool { return inForce(admin, g2) == nil }, 20*time.Second, 20*time.Millisecond)

	// Revocations: one until lifted, one for an hour.
	_, errOut, code = gh(admin, "revoke", "--identity", "ev-nobody", "--reason", "drill", "--for", "1h")
	require.Equal(t, 0, code, errOut)
	require.Eventually(t, func() bool {
		out, _, code := gh(admin, "revocations")
		return code == 0 && regexp.MustCompile(`(?m)^session\s+`+sessionA+`\s+\S+\s+\S+\s+never \(until lifted\)\s+INC-9: end this session$`).MatchString(out) &&
			regexp.MustCompile(`(?m)^identity\s+ev-nobody\s+\S+\s+\S+\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*\s+drill$`).MatchString(out)
	}, 20*time.Second, 50*time.Millisecond, "gatehouse revocations shows when each ends")

	// The reports, once the trail holds all of the above.
	report := func(kind string, extra ...string) (query.Coverage, []map[string]string, string) {
		var stdout, stderr bytes.Buffer
		args := append([]string{"evidence", kind, "--since", began.Format(time.RFC3339), "--format", "json", "--url", g.api, "--token", auditor}, extra...)
		code := cli.Main(args, &stdout, &stderr)
		require.Equal(t, 0, code, stderr.String())
		var out struct {
			query.Coverage
			Columns []string            `json:"columns"`
			Rows    []map[string]string `json:"rows"`
		}
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &out))
		require.Equal(t, evidenceColumns[kind], out.Columns)
		return out.Coverage, out.Rows, stderr.String()
	}
	// settled waits until a report's rows, with the fields fix drops or checks, equal want.
	settled := func(kind string, want []map[string]string, fix func(r map[string]string), extra ...string) (query.Coverage, string) {
		t.Helper()
		var got []map[string]string
		var cov query.Coverage
		var note string
		assert.Eventually(t, func() bool {
			cov, got, note = report(kind, extra...)
			for _, r := range got {
				fix(r)
			}
			return assert.ObjectsAreEqual(want, got)
		}, 60*time.Second, 250*time.Millisecond)
		require.Equal(t, want, got, "evidence %s", kind)
		return cov, note
	}
	// within replaces a report's time by "checked" when it falls within the exercise.
	within := func(v string) string {
		at, err := time.Parse("2006-01-02 15:04:05", v)
		if err != nil || at.Before(began) || at.After(time.Now().Add(time.Second)) {
			return v + " (not a time within the exercise)"
		}
		return "checked"
	}

	// access: every statement counted as itself.
	n := strconv.Itoa
	cov, note := settled("access", []map[string]string{
		{"identity": "ev-dba", "subject": "ev-dba", "on_behalf_of": "", "resource": "demo", "sessions": "2", "statements": "7", "allowed": "1", "masked": "0",
			"denied": "0", "held": "6", "approved": "2", "approval_denied": "1", "approval_expired": "1", "approval_cancelled": "1",
			"approval_pending": "1", "held_no_outcome": "0", "no_decision": "0", "sessions_revoked": "0", "sessions_grant_expired": "0",
			"sessions_token_expired": "0", "sessions_ended_other": "0", "first": "checked", "last": "checked"},
		{"identity": "ev-svc", "subject": "ev-svc", "on_behalf_of": "", "resource": "demo", "sessions": "2", "statements": n(3 + maskedReads), "allowed": "1",
			"masked": n(1 + maskedReads), "denied": "1", "held": "0", "approved": "0", "approval_denied": "0", "approval_expired": "0",
			"approval_cancelled": "0", "approval_pending": "0", "held_no_outcome": "0", "no_decision": "0", "sessions_revoked": "1",
			"sessions_grant_expired": "1", "sessions_token_expired": "0", "sessions_ended_other": "0", "first": "checked", "last": "checked"},
	}, func(r map[string]string) { r["first"], r["last"] = within(r["first"]), within(r["last"]) })
	require.Equal(t, began, cov.Since)
	require.False(t, cov.SinceDefault)
	require.True(t, cov.UntilDefault)
	require.Contains(t, note, "evidence access: covered "+began.Format(time.RFC3339)+" to ")
	require.Contains(t, note, "(until: the default, now); no filters; 2 row(s)")

	// denials: what did not run, and why.
	holdReason := "changing customer records (or running code that could) needs a second pair of eyes"
	denial := func(who, effect, outcome, policy, rule, reason, approval, by, why string) map[string]string {
		return map[string]string{"time": "checked", "identity": who, "subject": who, "resource": "demo", "session": "checked", "effect": effect, "outcome": outcome,
			"policy": policy, "rule": rule, "reason": reason, "fingerprint": "checked", "approval": approval, "denied_by": by, "denial_reason": why}
	}
	sessionOf := map[string]string{}
	for _, who := range []string{"ev-svc", "ev-dba"} {
		for _, s := range sessionsOf(who) {
			sessionOf[s.ID] = who
		}
	}
	fix := func(r map[string]string) {
		r["time"] = within(r["time"])
		if sessionOf[r["session"]] == r["identity"] {
			r["session"] = "checked"
		}
		if r["fingerprint"] != "" {
			r["fingerprint"] = "checked"
		}
		if strings.HasPrefix(r["reason"], "no rule allows drop_table on resource demo") {
			r["reason"] = "no rule allows drop_table on resource demo"
		}
	}
	settled("denials", []map[string]string{
		denial("ev-svc", "deny", "denied", "", "", "no rule allows drop_table on resource demo", "", "", ""),
		denial("ev-dba", "require_approval", "approval_denied", "demo-orders", "customer-writes-need-approval", holdReason, apDenied.ID, "approver-1", "not during the freeze"),
		denial("ev-dba", "require_approval", "approval_expired", "evidence-exercise", "order-inserts-need-approval", "inserting orders needs an approval within 2s", apExpired, "", ""),
		denial("ev-dba", "require_approval", "approval_cancelled", "demo-orders", "customer-writes-need-approval", holdReason, apCancelled.ID, "", ""),
		denial("ev-dba", "require_approval", "approval_pending", "evidence-exercise", "order-deletes-fail-fast", "deleting orders needs an approval, asked for once", apFailFast, "", ""),
	}, fix)

	// privileged: every write with its outcome and approval.
	priv := func(who, kinds, effect, outcome, rule, approval, by string) map[string]string {
		secs := ""
		if outcome == "approved" {
			secs = "checked"
		}
		return map[string]string{"time": "checked", "identity": who, "subject": who, "resource": "demo", "session": "checked", "kinds": kinds, "effect": effect,
			"outcome": outcome, "rule": rule, "approval": approval, "approved_by": by, "seconds_to_approve": secs}
	}
	cov, note = settled("privileged", []map[string]string{
		priv("ev-svc", `["drop_table"]`, "deny", "denied", "", "", ""),
		priv("ev-dba", `["update"]`, "require_approval", "approved", "customer-writes-need-approval", apApproved.ID, "approver-1"),
		priv("ev-dba", `["update"]`, "require_approval", "approval_denied", "customer-writes-need-approval", apDenied.ID, ""),
		priv("ev-dba", `["insert","select"]`, "require_approval", "approval_expired", "order-inserts-need-approval", apExpired, ""),
		priv("ev-dba", `["update"]`, "require_approval", "approval_cancelled", "customer-writes-need-approval", apCancelled.ID, ""),
		priv("ev-dba", `["delete"]`, "require_approval", "approval_pending", "order-deletes-fail-fast", apFailFast, ""),
		priv("ev-dba", `["delete"]`, "require_approval", "approved", "order-deletes-fail-fast", apFailFast, "approver-1"),
	}, func(r map[string]string) {
		fix(r)
		if s, err := strconv.Atoi(r["seconds_to_approve"]); err == nil && s >= 0 && s < 120 {
			r["seconds_to_approve"] = "checked"
		}
	}, "--label", "env=dev")
	require.Equal(t, &query.LabelFilter{Label: "env=dev", Resources: []string{"demo"}, InUse: []string{"env=dev", "team=orders"}}, cov.Filters.Label)
	require.Contains(t, note, "label env=dev: carried by demo; labels in use in this range: env=dev, team=orders; 7 row(s)")
	// Without --label: env=production, which nothing here carries, and it says so.
	cov, rows, note := report("privileged")
	require.Empty(t, rows)
	require.Equal(t, &query.LabelFilter{Label: "env=production", Default: true, Resources: []string{}, InUse: []string{"env=dev", "team=orders"}}, cov.Filters.Label)
	require.Contains(t, note, "label env=production (the default; --label to change): no resource with a session in this range carries it; labels in use in this range: env=dev, team=orders; 0 row(s)")

	// grants: created, expired with its expiry, created, revoked with who and why.
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	grantRow := func(event, id, expires, approvedBy, reason, revokedBy, revokeReason, ended string) map[string]string {
		return map[string]string{"time": "checked", "event": event, "grant": id, "identity": "ev-svc", "subject": "ev-svc", "resource": "demo", "role": "dba",
			"expires": expires, "approved_by": approvedBy, "reason": reason, "revoked_by": revokedBy, "revoke_reason": revokeReason, "ended_sessions": ended}
	}
	settled("grants", []map[string]string{
		grantRow("grant.created", g1, rfc(grant1.Expires), "approver-1", "INC-E1", "", "", ""),
		grantRow("grant.expired", g1, rfc(grant1.Expires), "", "", "", "", "true"),
		grantRow("grant.created", g2, rfc(grant2.Expires), "approver-1", "INC-E2", "", "", ""),
		grantRow("grant.revoked", g2, rfc(grant2.Expires), "", "", "admin", "INC-E2 closed early", "true"),
	}, func(r map[string]string) {
		r["time"] = within(r["time"])
		if e, err := time.Parse(time.RFC3339Nano, r["expires"]); err == nil {
			r["expires"] = rfc(e)
		}
	})

	// audit verify says what it covered.
	var stdout, stderr bytes.Buffer
	cli.Main([]string{"audit", "verify", "--since", began.Format(time.RFC3339), "--url", g.api, "--token", auditor}, &stdout, &stderr)
	require.Contains(t, stdout.String(), "covered: every session with events from "+began.Format(time.RFC3339)+" to ", stdout.String()+stderr.String())
	require.NotContains(t, stdout.String(), "the default")
	stdout.Reset()
	stderr.Reset()
	cli.Main([]string{"audit", "verify", "--url", g.api, "--token", auditor}, &stdout, &stderr)
	require.Regexp(t, `covered: every session with events from \S+ to \S+ \(the default: the last 24 hours; --since to look further back\)`, stdout.String(), stderr.String())

	// A revocation without a reason would tell the clients whose sessions end nothing: the
	// API refuses one too.
	req, err := http.NewRequest(http.MethodPost, g.api+"/api/v1/revocations", strings.NewReader(`{"kind":"session","value":"x","reason":" "}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(body), "reason is required")
}
