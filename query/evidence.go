package query

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// evidenceQueries are the evidence reports: SQL over the events of a time range
// (placeholders: since, until in microseconds), their columns in order.
var evidenceQueries = map[string]struct {
	columns []string
	sql     string
}{
	// Who accessed which resource, how often, first and last time (CC6.1, CC6.3).
	"access": {[]string{"identity", "on_behalf_of", "resource", "sessions", "statements", "denied", "first", "last"}, `
		SELECT identity_sub, any(identity_on_behalf_of), resource, uniqExactIf(session_id, type = 'session.start'),
			uniqExactIf(id, type = 'db.query'), uniqExactIf(id, type = 'decision' AND visitParamExtractString(payload, 'effect') IN ('deny', 'require_approval')),
			toString(toDateTime(intDiv(min(time_us), 1000000))), toString(toDateTime(intDiv(max(time_us), 1000000)))
		FROM {db}.events
		WHERE {range} AND resource != '_config' AND type != 'auth.failed'
		GROUP BY identity_sub, resource ORDER BY identity_sub, resource`},
	// Denied and blocked statements, with the rule (CC7.2).
	"denials": {[]string{"time", "identity", "resource", "session", "effect", "policy", "rule", "reason", "fingerprint"}, `
		SELECT toString(toDateTime(intDiv(time_us, 1000000))), identity_sub, resource, session_id, visitParamExtractString(payload, 'effect'),
			visitParamExtractString(payload, 'policy'), visitParamExtractString(payload, 'rule'), visitParamExtractString(payload, 'reason'),
			visitParamExtractString(payload, 'fingerprint')
		FROM {db}.events
		WHERE {range} AND type = 'decision' AND visitParamExtractString(payload, 'effect') IN ('deny', 'require_approval')
		ORDER BY time_us, id LIMIT 1 BY id`},
	// Writes and DDL on resources with a label (default env=production), each with the
	// approvals in its session and the time from request to approval (CC6.2, CC8.1).
	"privileged": {[]string{"time", "identity", "resource", "session", "kinds", "effect", "rule", "approved_by", "seconds_to_approve"}, `
		SELECT toString(toDateTime(intDiv(time_us, 1000000))), identity_sub, resource, session_id, visitParamExtractRaw(payload, 'kinds'),
			visitParamExtractString(payload, 'effect'), visitParamExtractString(payload, 'rule'), approvers, toString(wait)
		FROM {db}.events
		ANY LEFT JOIN (
			SELECT session_id, arrayStringConcat(groupUniqArrayIf(visitParamExtractString(payload, 'by'), type = 'approval.decided' AND visitParamExtractString(payload, 'decision') = 'approve'), ' ') AS approvers,
				if(countIf(type = 'approval.requested') > 0 AND countIf(type = 'approval.decided') > 0,
					intDiv(maxIf(time_us, type = 'approval.decided') - minIf(time_us, type = 'approval.requested'), 1000000), 0) AS wait
			FROM {db}.events WHERE type IN ('approval.requested', 'approval.decided') GROUP BY session_id
		) USING session_id
		WHERE {range} AND type = 'decision' AND visitParamExtractString(payload, 'effect') IN ('allow', 'mask', 'require_approval')
			AND (match(visitParamExtractRaw(payload, 'kinds'), '"(insert|update|delete|merge|truncate|copy_from|grant|revoke|rename|comment|index|view|create_[a-z_]+|alter_[a-z_]+|drop_[a-z_]+)"'))
			AND session_id IN (SELECT session_id FROM {db}.events WHERE type = 'session.start' AND position(payload, concat('"', ?, '"')) > 0)
		ORDER BY time_us, id LIMIT 1 BY id`},
	// Grants created and ended (CC6.2, CC6.3).
	"grants": {[]string{"time", "event", "grant", "identity", "resource", "role", "expires", "approved_by"}, `
		SELECT toString(toDateTime(intDiv(time_us, 1000000))), type, visitParamExtractString(payload, 'grant_id'), identity_sub,
			visitParamExtractString(payload, 'resource'), visitParamExtractString(payload, 'role'), visitParamExtractString(payload, 'expires'),
			visitParamExtractRaw(payload, 'approved_by')
		FROM {db}.events
		WHERE {range} AND type IN ('grant.created', 'grant.expired')
		ORDER BY time_us, id LIMIT 1 BY id`},
	// Policy and resource changes: who changed what, when, with the diff (CC6.1, CC8.1).
	"changes": {[]string{"time", "by", "kind", "name", "action", "source", "diff"}, `
		SELECT toString(toDateTime(intDiv(time_us, 1000000))), identity_sub, visitParamExtractString(payload, 'kind'),
			visitParamExtractString(payload, 'name'), visitParamExtractString(payload, 'action'), visitParamExtractString(payload, 'source'),
			visitParamExtractString(payload, 'diff')
		FROM {db}.events
		WHERE {range} AND type = 'policy.changed'
		ORDER BY time_us, id LIMIT 1 BY id`},
}

// evidence answers GET /api/v1/evidence/:kind?since=&until=&format=json|csv (default: the
// last 30 days, JSON).
func (a *API) evidence(c echo.Context) error {
	q, ok := evidenceQueries[c.Param("kind")]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "evidence is one of access, privileged, denials, grants, changes")
	}
	until := time.Now()
	since := until.Add(-30 * 24 * time.Hour)
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := c.QueryParam(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time", p.name, v))
			}
			*p.t = t
		}
	}
	format := c.QueryParam("format")
	if format != "" && format != "json" && format != "csv" {
		return echo.NewHTTPError(http.StatusBadRequest, "format is json or csv")
	}
	args := []any{uint64(since.UnixMicro()), uint64(until.UnixMicro())}
	if c.Param("kind") == "privileged" {
		label := c.QueryParam("label")
		if label == "" {
			label = "env=production"
		}
		args = append(args, label)
	}
	// Rows are deduplicated by event id (uniqExact, LIMIT 1 BY) rather than with FINAL,
	// which merges the whole table on one thread; the date bounds let ClickHouse skip the
	// partitions outside the range (a day wider on each side: the date column is in the
	// server's time zone). The dates come from parsed times, never from text.
	rng := fmt.Sprintf("date >= '%s' AND date <= '%s' AND time_us >= ? AND time_us < ?",
		since.UTC().AddDate(0, 0, -1).Format("2006-01-02"), until.UTC().AddDate(0, 0, 1).Format("2006-01-02"))
	rows, err := a.ch.Query(c.Request().Context(), strings.ReplaceAll(replaceDB(q.sql, a.db), "{range}", rng), args...)
	if err != nil {
		return a.storeError(err)
	}
	defer rows.Close()
	var table [][]string
	types := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			switch ct.DatabaseTypeName() {
			case "UInt64":
				vals[i] = new(uint64)
			default:
				vals[i] = new(string)
			}
		}
		if err := rows.Scan(vals...); err != nil {
			return a.storeError(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case *uint64:
				row[i] = strconv.FormatUint(*x, 10)
			case *string:
				row[i] = *x
			}
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return a.storeError(err)
	}
	if format == "csv" {
		c.Response().Header().Set("Content-Type", "text/csv")
		c.Response().WriteHeader(http.StatusOK)
		w := csv.NewWriter(c.Response())
		_ = w.Write(q.columns)
		_ = w.WriteAll(table)
		return nil
	}
	out := make([]map[string]string, 0, len(table))
	for _, r := range table {
		m := map[string]string{}
		for i, col := range q.columns {
			m[col] = r[i]
		}
		out = append(out, m)
	}
	return c.JSON(http.StatusOK, map[string]any{"kind": c.Param("kind"), "since": since.UTC(), "until": until.UTC(), "rows": out})
}

func replaceDB(sql, db string) string {
	out := []byte{}
	for i := 0; i < len(sql); i++ {
		if i+4 <= len(sql) && sql[i:i+4] == "{db}" {
			out = append(out, db...)
			i += 3
			continue
		}
		out = append(out, sql[i])
	}
	return string(out)
}
