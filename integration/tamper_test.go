package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
)

// tamperEvidence verifies the audit trail as stored, then alters, deletes and reorders
// rows and removes a seal in ClickHouse, and sees each caught.
func tamperEvidence(t *testing.T, g *gateway, ch driver.Conn, since time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	auditor := g.token(t, "auditor", "auditors")
	verify := func() (string, int) {
		var stdout, stderr bytes.Buffer
		code := cli.Main([]string{"audit", "verify", "--since", since.UTC().Format(time.RFC3339), "--url", g.api, "--token", auditor}, &stdout, &stderr)
		return stdout.String() + stderr.String(), code
	}
	// Every session that ended so far is in the store with its seal: nothing to report.
	var unsettled string
	settled := assert.Eventually(t, func() bool {
		err := ch.QueryRow(ctx, "SELECT toString(groupArray(tuple(session_id, identity_sub, types))) FROM (SELECT session_id, any(identity_sub) AS identity_sub, groupArray(type) AS types, countIf(type = 'session.end') AS ends, countIf(type = 'session.sealed') AS seals FROM "+
			g.chDB+".events WHERE resource != '_config' GROUP BY session_id HAVING countIf(type = 'session.start') > 0 AND (ends > 1 OR seals != ends))").Scan(&unsettled)
		return err == nil && unsettled == "[]"
	}, 30*time.Second, 200*time.Millisecond)
	require.True(t, settled, "ended sessions sealed in the store; not: %s", unsettled)
	out, code := verify()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, " 0 problem(s)")

	// Four sealed sessions whose second event is a statement.
	rows, err := ch.Query(ctx, "SELECT session_id FROM "+g.chDB+".events FINAL WHERE seq = 2 AND type = 'db.query' AND resource != '_config' AND session_id IN (SELECT session_id FROM "+
		g.chDB+".events WHERE type = 'session.sealed') ORDER BY session_id LIMIT 4")
	require.NoError(t, err)
	var s []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		s = append(s, id)
	}
	rows.Close()
	require.Len(t, s, 4)
	cols := ingest.EventColumns
	exec := func(q string, args ...any) { require.NoError(t, ch.Exec(ctx, q, args...), q) }
	count := func(q string, args ...any) uint64 {
		var n uint64
		require.NoError(t, ch.QueryRow(ctx, q, args...).Scan(&n))
		return n
	}
	db := g.chDB

	// Altered: the statement of s[0] rewritten in place (same session, sequence and id).
	exec("INSERT INTO "+db+".events ("+cols+") SELECT "+strings.Replace(cols, "payload", "replaceRegexpOne(payload, '\"sql\":\"', '\"sql\":\"/* nothing to see */ ')", 1)+
		" FROM "+db+".events WHERE session_id = ? AND seq = 2", s[0])
	// Deleted: the third event of s[1].
	exec("ALTER TABLE "+db+".events DELETE WHERE session_id = ? AND seq = 3", s[1])
	// Reordered: events 2 and 3 of s[2] swap places.
	var id2, id3 string
	require.NoError(t, ch.QueryRow(ctx, "SELECT any(id) FROM "+db+".events WHERE session_id = ? AND seq = 2", s[2]).Scan(&id2))
	require.NoError(t, ch.QueryRow(ctx, "SELECT any(id) FROM "+db+".events WHERE session_id = ? AND seq = 3", s[2]).Scan(&id3))
	exec("INSERT INTO "+db+".events ("+cols+") SELECT "+strings.Replace(cols, "seq", "if(seq = 2, toUInt64(3), toUInt64(2)) AS seq", 1)+
		" FROM "+db+".events WHERE session_id = ? AND seq IN (2, 3)", s[2])
	exec("ALTER TABLE "+db+".events DELETE WHERE session_id = ? AND ((seq = 2 AND id = ?) OR (seq = 3 AND id = ?))", s[2], id2, id3)
	// Unsealed: the seal of s[3] removed.
	exec("ALTER TABLE "+db+".events DELETE WHERE session_id = ? AND type = 'session.sealed'", s[3])
	require.Eventually(t, func() bool {
		return count("SELECT count() FROM "+db+".events WHERE session_id = ? AND seq = 3", s[1]) == 0 &&
			count("SELECT count() FROM "+db+".events WHERE session_id = ? AND type = 'session.sealed'", s[3]) == 0 &&
			count("SELECT count() FROM "+db+".events WHERE session_id = ? AND seq = 2 AND id = ?", s[2], id2) == 0
	}, 30*time.Second, 100*time.Millisecond, "the mutations are applied")

	out, code = verify()
	require.Equal(t, 1, code, out)
	for kind, session := range map[string]string{"ALTERED": s[0], "MISSING": s[1], "REORDERED": s[2], "UNSEALED": s[3]} {
		require.Contains(t, out, fmt.Sprintf("%-9s session %s", kind, session), out)
	}
	require.Contains(t, out, "the audit trail does not verify")
	// A row stored twice as it was (an insert retried after a crash) is replayed once.
	var intact string
	require.NoError(t, ch.QueryRow(ctx, "SELECT any(session_id) FROM "+db+".events WHERE type = 'session.sealed' AND session_id NOT IN (?, ?, ?, ?)", s[0], s[1], s[2], s[3]).Scan(&intact))
	var before query.Replay
	require.NoError(t, g.cliJSON(t, g.token(t, "auditor", "auditors"), &before, "sessions", "replay", intact))
	exec("INSERT INTO "+db+".events ("+cols+") SELECT "+cols+" FROM "+db+".events WHERE session_id = ? AND seq = 2", intact)
	var twice query.Replay
	require.NoError(t, g.cliJSON(t, g.token(t, "auditor", "auditors"), &twice, "sessions", "replay", intact))
	require.True(t, twice.ChainOK, twice.ChainError)
	require.Equal(t, before.Events, twice.Events)
	// The streamed replay of the altered session says so after its events.
	var replay query.Replay
	require.NoError(t, g.cliJSON(t, g.token(t, "auditor", "auditors"), &replay, "sessions", "replay", s[0]))
	require.False(t, replay.ChainOK)
	// Before ClickHouse merges the rewritten row over the original, both are stored: either
	// one is replayed first, and either way the alteration is named.
	require.Contains(t, replay.ChainError, "(event altered)")
}

// siemExport pages through GET /api/v1/export from the start, resuming from each answer's
// cursor, and checks that every event comes exactly once, in order; and that the OCSF
// form maps statements, refusals and logons to their classes.
func siemExport(t *testing.T, g *gateway, ch driver.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	auditor := g.token(t, "auditor", "auditors")
	page := func(cursor, format string) ([]string, string) {
		req, err := http.NewRequest(http.MethodGet, g.api+"/api/v1/export?limit=97&format="+format+"&cursor="+cursor, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+auditor)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		require.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines, resp.Header.Get("X-Gatehouse-Cursor")
	}
	seen := map[string]bool{}
	cursor := ""
	var lastSeq uint64
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		lines, next := page(cursor, "native")
		if len(lines) == 0 {
			require.Equal(t, cursor, next, "an empty page keeps the cursor")
			break
		}
		for _, l := range lines {
			var e struct {
				ID string `json:"id"`
			}
			require.NoError(t, json.Unmarshal([]byte(l), &e))
			require.False(t, seen[e.ID], "event %s exported twice", e.ID)
			seen[e.ID] = true
		}
		c, err := query.ParseCursor(next)
		require.NoError(t, err)
		require.GreaterOrEqual(t, c.Seq, lastSeq, "cursors move forward")
		lastSeq, cursor = c.Seq, next
	}
	var inStore uint64
	require.NoError(t, ch.QueryRow(ctx, "SELECT count() FROM "+g.chDB+".events FINAL WHERE stream_seq <= ?", lastSeq).Scan(&inStore))
	require.Equal(t, int(inStore), len(seen), "every event up to the cursor, exactly once")
	require.Greater(t, len(seen), 100)

	classes := map[float64]bool{}
	for cursor := ""; ; {
		lines, next := page(cursor, "ocsf")
		if len(lines) == 0 {
			break
		}
		for _, l := range lines {
			var r map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &r))
			classes[r["class_uid"].(float64)] = true
		}
		cursor = next
	}
	for _, c := range []float64{6005, 2004, 3002, 3003, 3005} {
		require.True(t, classes[c], "OCSF class %v exported (got %v)", c, classes)
	}
}

// sessionSearch finds sessions by what happened in them.
func sessionSearch(t *testing.T, g *gateway) {
	auditor := g.token(t, "auditor", "auditors")
	find := func(args ...string) []query.Session {
		var out struct {
			Sessions []query.Session `json:"sessions"`
		}
		require.NoError(t, g.cliJSON(t, auditor, &out, append([]string{"sessions", "list"}, args...)...))
		return out.Sessions
	}
	check := func(what string, ss []query.Session, ok func(query.Session) bool) {
		require.NotEmpty(t, ss, what)
		for _, s := range ss {
			require.True(t, ok(s), "%s: %+v", what, s)
		}
	}
	check("approved", find("--effect", "approved"), func(s query.Session) bool { return s.Approved > 0 && s.Identity == "dba-oncall" })
	check("masked", find("--effect", "masked", "--identity", "svc-orders"), func(s query.Session) bool { return s.Masked > 0 })
	check("denied", find("--effect", "denied"), func(s query.Session) bool { return s.Denied > 0 })
	// A statement held and approved ran: it is held (and approved), not denied.
	check("held", find("--effect", "held"), func(s query.Session) bool { return s.Held >= s.Approved && s.Held > 0 })
	check("approved, not denied", find("--effect", "approved", "--text", "update customers"), func(s query.Session) bool { return s.Held > 0 })
	check("text", find("--text", "UPDATE CUSTOMERS"), func(s query.Session) bool { return s.Identity == "dba-oncall" })
	check("group", find("--group", "orders-readers"), func(s query.Session) bool { return s.Identity == "svc-orders" })
	require.Empty(t, find("--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
	// Paging: two pages of one, no overlap.
	var p1 struct {
		Sessions   []query.Session `json:"sessions"`
		NextBefore string          `json:"next_before"`
	}
	require.NoError(t, g.cliJSON(t, auditor, &p1, "sessions", "list", "--limit", "1"))
	require.Len(t, p1.Sessions, 1)
	require.NotEmpty(t, p1.NextBefore)
	p2 := find("--limit", "1", "--before", p1.NextBefore)
	require.Len(t, p2, 1)
	require.NotEqual(t, p1.Sessions[0].ID, p2[0].ID)
	require.False(t, p2[0].Start.After(p1.Sessions[0].Start))
}

// evidenceReports checks each report against what the exercise did.
func evidenceReports(t *testing.T, g *gateway) {
	auditor := g.token(t, "auditor", "auditors")
	report := func(kind, format string, extra ...string) string {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append([]string{"evidence", kind, "--format", format, "--url", g.api, "--token", auditor}, extra...), &stdout, &stderr)
		require.Equal(t, 0, code, stderr.String())
		return stdout.String()
	}
	access := report("access", "csv")
	require.True(t, strings.HasPrefix(access, strings.Join(evidenceColumns["access"], ",")+"\n"), access)
	require.Contains(t, access, "svc-orders,,demo,")
	require.Contains(t, access, "dba-oncall,,demo,")
	denials := report("denials", "json")
	require.Contains(t, denials, `"rule":"no-drop-database"`)
	require.Contains(t, denials, `"effect":"require_approval"`)
	grants := report("grants", "csv")
	require.Contains(t, grants, "grant.created")
	require.Contains(t, grants, ",demo,dba,")
	// The demo resource is labelled env=dev: its approved customer updates are privileged
	// operations there.
	privileged := report("privileged", "csv", "--label", "env=dev")
	require.Contains(t, privileged, "dba-oncall,demo,")
	require.Contains(t, privileged, "approver-1")
	require.NotContains(t, report("privileged", "csv"), "dba-oncall", "nothing ran on a production resource")
	changes := report("changes", "json")
	require.Contains(t, changes, `"name":"live"`)
	require.Contains(t, changes, `"by":"admin"`)
}

// retentionRun drops a month of the demo resource (env=dev: kept 30 days) that has passed
// out of retention, through the CLI, and finds the run in the trail.
func retentionRun(t *testing.T, g *gateway, ch driver.Conn) {
	ctx := context.Background()
	old := time.Date(2020, 1, 15, 12, 0, 0, 0, time.UTC)
	b, err := ch.PrepareBatch(ctx, "INSERT INTO "+g.chDB+".events ("+ingest.EventColumns+")")
	require.NoError(t, err)
	require.NoError(t, b.Append(old, old, uint64(old.UnixMicro()), "old-event", "session.end", "GH1001", "old-session", uint64(1), "demo",
		"svc-orders", "", "iss", []string{}, "service", "", uint64(0), "", "h", `{"reason":"client"}`, uint64(0), uint32(0)))
	require.NoError(t, b.Send())
	run := func(token string, args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append([]string{"audit", "retention", "--url", g.ingestAPI, "--token", token}, args...), &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	code, out := run(g.token(t, "auditor", "auditors"), "--dry-run")
	require.NotEqual(t, 0, code, "auditors may not run retention")
	require.Contains(t, out, "403")

	admin := g.token(t, "admin", "gatehouse-admins")
	code, out = run(admin, "--dry-run")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `demo\s+202001\s+2020-01-15\s+1\s+720h0m0s\s+env=dev`, out)
	require.Contains(t, out, "would drop 1 partition(s), 1 event(s)")
	code, out = run(admin)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "dropped 1 partition(s), 1 event(s)")
	var n uint64
	require.NoError(t, ch.QueryRow(ctx, "SELECT count() FROM "+g.chDB+".events WHERE id = 'old-event'").Scan(&n))
	require.Zero(t, n)
	var payload string
	require.Eventually(t, func() bool {
		return ch.QueryRow(ctx, "SELECT payload FROM "+g.chDB+".events WHERE type = 'audit.retention' AND identity_sub = 'admin'").Scan(&payload) == nil
	}, 20*time.Second, 100*time.Millisecond, "the run is in the trail")
	require.Contains(t, payload, `"resource":"demo","month":202001`)
	code, out = run(admin)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "dropped 0 partition(s)")
}
