package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/cli"
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
	// Every session so far ended and is in the store, sealed: nothing to report.
	var unsettled string
	settled := assert.Eventually(t, func() bool {
		err := ch.QueryRow(ctx, "SELECT toString(groupArray(tuple(session_id, identity_sub, types))) FROM (SELECT session_id, any(identity_sub) AS identity_sub, groupArray(type) AS types, countIf(type = 'session.end') AS ends, countIf(type = 'session.sealed') AS seals FROM "+
			g.chDB+".events WHERE resource != '_config' GROUP BY session_id HAVING countIf(type = 'session.start') > 0 AND (ends != 1 OR seals != 1))").Scan(&unsettled)
		return err == nil && unsettled == "[]"
	}, 30*time.Second, 200*time.Millisecond)
	require.True(t, settled, "sessions ended and sealed in the store; not: %s", unsettled)
	out, code := verify()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, " 0 problem(s)")

	// Four sealed sessions whose second event is a statement.
	rows, err := ch.Query(ctx, "SELECT session_id FROM "+g.chDB+".events FINAL WHERE seq = 2 AND type = 'db.query' AND resource != '_config' ORDER BY session_id LIMIT 4")
	require.NoError(t, err)
	var s []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		s = append(s, id)
	}
	rows.Close()
	require.Len(t, s, 4)
	cols := "date, time, time_us, id, type, code, session_id, seq, resource, identity_sub, identity_issuer, identity_groups, identity_kind, identity_on_behalf_of, policy_revision, prev_hash, hash, payload, stream_seq, stream_index"
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
}
