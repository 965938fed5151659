package query

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// maxChartBuckets bounds the time buckets of one chart (per resource).
const maxChartBuckets = 1000

// Charts is the answer of GET /api/v1/evidence/charts: activity over time per resource,
// and approvals per approver with the time they took to decide.
type Charts struct {
	// Bucket is hour or day (UTC); Since and Until the range (since <= time < until).
	Bucket    string          `json:"bucket"`
	Since     time.Time       `json:"since"`
	Until     time.Time       `json:"until"`
	Activity  []ActivityPoint `json:"activity"`
	Approvals []ApproverStats `json:"approvals"`
}

// ActivityPoint is one resource's activity in one bucket: its statements (SQL statements,
// SSH and HTTP requests, as the session list counts them) and the denials among its
// decisions. Buckets without activity are left out.
type ActivityPoint struct {
	Time       time.Time `json:"time"` // the bucket's start
	Resource   string    `json:"resource"`
	Statements uint64    `json:"statements"`
	Denied     uint64    `json:"denied"`
}

// ApproverStats is one approver's decisions in the range (by decision time): how many,
// approved and denied, and the time from request to their decision (median and 90th
// percentile, over the decisions whose request is in the trail; null without one).
type ApproverStats struct {
	// Approver is the approver's name where the trail knows it, else the subject.
	Approver      string   `json:"approver"`
	Subject       string   `json:"subject"`
	Decided       uint64   `json:"decided"`
	Approved      uint64   `json:"approved"`
	Denied        uint64   `json:"denied"`
	MedianSeconds *float64 `json:"median_seconds"`
	P90Seconds    *float64 `json:"p90_seconds"`
}

// chartsActivitySQL counts, per bucket and resource, statements and denials; an event
// stored twice counts once (uniqExact over ids). The bucket is computed from the
// microseconds, so it is UTC whatever the server's time zone.
const chartsActivitySQL = `
	SELECT intDiv(time_us, {bucket_us}) * {bucket_s} AS bucket, resource,
		uniqExactIf(id, type IN ('db.query', 'ssh.request', 'http.request')) AS statements,
		uniqExactIf(id, type = 'decision' AND visitParamExtractString(payload, 'effect') = 'deny') AS denied
	FROM {db}.events
	WHERE {range} AND resource != '_config' AND type IN ('db.query', 'ssh.request', 'http.request', 'decision')
	GROUP BY bucket, resource
	ORDER BY bucket, resource`

// chartsApprovalsSQL is one row per approver: their decisions in the range, held requests
// (approval.decided in a session's trail, its request's approval.requested found up to two
// days earlier: a hold waits at most a day) and fail-fast approvals used (approval.used:
// each approver approved, requested_at to approved_at), with the time each took. Names
// come from the approvers' own events in the range.
const chartsApprovalsSQL = `
	SELECT approver, if(approver_name = '', approver, approver_name), count(), countIf(decision = 'approve'), countIf(decision = 'deny'),
		countIf(secs >= 0), quantileExactIf(0.5)(secs, secs >= 0), quantileExactIf(0.9)(secs, secs >= 0)
	FROM (
		SELECT approver, decision,
			if(requested_us > 0 AND decided_us >= requested_us, toFloat64(decided_us - requested_us) / 1000000, toFloat64(-1)) AS secs
		FROM (
			SELECT approval_id, approver, decision, decided_us
			FROM (
				SELECT id, visitParamExtractString(payload, 'approval_id') AS approval_id, visitParamExtractString(payload, 'by') AS approver,
					visitParamExtractString(payload, 'decision') AS decision, time_us AS decided_us
				FROM {db}.events
				WHERE {range} AND type = 'approval.decided'
				ORDER BY id LIMIT 1 BY id
			)
		) ANY LEFT JOIN (
			SELECT visitParamExtractString(payload, 'approval_id') AS approval_id, min(time_us) AS requested_us
			FROM {db}.events
			WHERE {wide} AND type = 'approval.requested'
			GROUP BY approval_id
		) USING approval_id
		UNION ALL
		SELECT approver, 'approve' AS decision,
			if(toUnixTimestamp(parseDateTimeBestEffortOrZero(req_at)) > 0 AND parseDateTimeBestEffortOrZero(appr_at) >= parseDateTimeBestEffortOrZero(req_at),
				toFloat64(toUnixTimestamp(parseDateTimeBestEffortOrZero(appr_at)) - toUnixTimestamp(parseDateTimeBestEffortOrZero(req_at))), toFloat64(-1)) AS secs
		FROM (
			SELECT id, visitParamExtractString(payload, 'requested_at') AS req_at, visitParamExtractString(payload, 'approved_at') AS appr_at,
				splitByChar(',', replaceRegexpAll(visitParamExtractRaw(payload, 'approved_by'), '[\\[\\]"]', '')) AS approvers
			FROM {db}.events
			WHERE {range} AND type = 'approval.used'
			ORDER BY id LIMIT 1 BY id
		)
		ARRAY JOIN approvers AS approver
		WHERE approver != ''
	) ANY LEFT JOIN (
		SELECT identity_sub AS approver, any(identity_name) AS approver_name
		FROM {db}.events
		WHERE {range} AND identity_name != ''
		GROUP BY identity_sub
	) USING approver
	GROUP BY approver, approver_name
	ORDER BY approver`

// charts answers GET /api/v1/evidence/charts?since=&until=[&bucket=hour|day] (default:
// the last 30 days; hours when that makes at most maxChartBuckets buckets, else days).
func (a *API) charts(c echo.Context) error {
	out := Charts{Until: time.Now().UTC().Truncate(time.Second), Activity: []ActivityPoint{}, Approvals: []ApproverStats{}}
	sinceGiven := false
	for _, p := range []struct {
		name  string
		t     *time.Time
		given *bool
	}{{"since", &out.Since, &sinceGiven}, {"until", &out.Until, nil}} {
		if v := c.QueryParam(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time", p.name, v))
			}
			*p.t = t.UTC()
			if p.given != nil {
				*p.given = true
			}
		}
	}
	if !sinceGiven {
		out.Since = out.Until.Add(-30 * 24 * time.Hour)
	}
	if !out.Since.Before(out.Until) {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("since (%s) must be before until (%s)", out.Since.Format(time.RFC3339), out.Until.Format(time.RFC3339)))
	}
	span := out.Until.Sub(out.Since)
	buckets := func(size time.Duration) int64 {
		// Buckets are aligned to the hour or day: the range touches at most this many.
		return int64(out.Until.Truncate(size).Sub(out.Since.Truncate(size))/size) + 1
	}
	var size time.Duration
	switch out.Bucket = c.QueryParam("bucket"); out.Bucket {
	case "":
		out.Bucket, size = "hour", time.Hour
		if buckets(time.Hour) > maxChartBuckets {
			out.Bucket, size = "day", 24*time.Hour
		}
	case "hour":
		size = time.Hour
	case "day":
		size = 24 * time.Hour
	default:
		return echo.NewHTTPError(http.StatusBadRequest, "bucket is hour or day")
	}
	if n := buckets(size); n > maxChartBuckets {
		hint := "bucket=day or a shorter range"
		if out.Bucket == "day" {
			hint = "a shorter range"
		}
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s from %s to %s is %d %s buckets, over the %d a chart may have: ask for %s",
			span, out.Since.Format(time.RFC3339), out.Until.Format(time.RFC3339), n, out.Bucket, maxChartBuckets, hint))
	}
	ctx := c.Request().Context()
	// As the evidence reports: the date bounds (a day wider on each side: the date column
	// is in the server's time zone) let ClickHouse skip partitions; every number comes from
	// a parsed time, never from text.
	rng := func(since time.Time) string {
		return fmt.Sprintf("date >= '%s' AND date <= '%s' AND time_us >= %d AND time_us < %d",
			since.AddDate(0, 0, -1).Format("2006-01-02"), out.Until.AddDate(0, 0, 1).Format("2006-01-02"), since.UnixMicro(), out.Until.UnixMicro())
	}
	sql := strings.NewReplacer("{bucket_us}", fmt.Sprint(size.Microseconds()), "{bucket_s}", fmt.Sprint(int64(size.Seconds())),
		"{range}", rng(out.Since), "{wide}", rng(out.Since.Add(-48*time.Hour))).Replace(chartsActivitySQL)
	rows, err := a.ch.Query(ctx, replaceDB(sql, a.db))
	if err != nil {
		return a.storeError(err)
	}
	for rows.Next() {
		var p ActivityPoint
		var bucket uint64
		if err := rows.Scan(&bucket, &p.Resource, &p.Statements, &p.Denied); err != nil {
			rows.Close()
			return a.storeError(err)
		}
		p.Time = time.Unix(int64(bucket), 0).UTC()
		out.Activity = append(out.Activity, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return a.storeError(err)
	}

	sql = strings.NewReplacer("{range}", rng(out.Since), "{wide}", rng(out.Since.Add(-48*time.Hour))).Replace(chartsApprovalsSQL)
	rows, err = a.ch.Query(ctx, replaceDB(sql, a.db))
	if err != nil {
		return a.storeError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s ApproverStats
		var timed uint64
		var median, p90 float64
		if err := rows.Scan(&s.Subject, &s.Approver, &s.Decided, &s.Approved, &s.Denied, &timed, &median, &p90); err != nil {
			return a.storeError(err)
		}
		if timed > 0 && !math.IsNaN(median) && !math.IsNaN(p90) {
			s.MedianSeconds, s.P90Seconds = &median, &p90
		}
		out.Approvals = append(out.Approvals, s)
	}
	if err := rows.Err(); err != nil {
		return a.storeError(err)
	}
	return c.JSON(http.StatusOK, out)
}
