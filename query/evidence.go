package query

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// HeaderCoverage carries a report's Coverage (JSON), in both formats, so that a CSV body
// stays plain CSV.
const HeaderCoverage = "X-Gatehouse-Coverage"

// DefaultPrivilegedLabel is the label the privileged report filters on when none is given.
const DefaultPrivilegedLabel = "env=production"

// Coverage is what an evidence report covered: its range (events with since <= time <
// until) and its filters. JSON reports carry it at the top level too.
type Coverage struct {
	Kind  string    `json:"kind"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// SinceDefault and UntilDefault say the bound was not given: the last 30 days, now.
	SinceDefault bool    `json:"since_default,omitempty"`
	UntilDefault bool    `json:"until_default,omitempty"`
	Filters      Filters `json:"filters"`
	RowCount     int     `json:"row_count"`
}

// Filters are a report's filters beyond its range.
type Filters struct {
	// Label is the privileged report's resource label.
	Label *LabelFilter `json:"label,omitempty"`
	// Kind (policy or resource) and Name narrow the changes report to one kind, one name.
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
}

// LabelFilter is a label filter and what it matched in the range, so that an empty report
// says whether nothing happened or nothing carried the label.
type LabelFilter struct {
	Label   string `json:"label"`   // key=value
	Default bool   `json:"default"` // not given: DefaultPrivilegedLabel
	// Resources are the resources with a session in the range whose labels include it.
	Resources []string `json:"resources"`
	// InUse are the labels of every resource with a session in the range.
	InUse []string `json:"labels_in_use"`
}

// Summary is the coverage in one line, for people (the CLI prints it on stderr).
func (c *Coverage) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "evidence %s: covered %s to %s", c.Kind, c.Since.UTC().Format(time.RFC3339), c.Until.UTC().Format(time.RFC3339))
	switch {
	case c.SinceDefault && c.UntilDefault:
		b.WriteString(" (the default: the last 30 days)")
	case c.SinceDefault:
		b.WriteString(" (since: the default, 30 days before until)")
	case c.UntilDefault:
		b.WriteString(" (until: the default, now)")
	}
	if l := c.Filters.Label; l != nil {
		fmt.Fprintf(&b, "; label %s", l.Label)
		if l.Default {
			b.WriteString(" (the default; --label to change)")
		}
		if len(l.Resources) == 0 {
			b.WriteString(": no resource with a session in this range carries it")
		} else {
			fmt.Fprintf(&b, ": carried by %s", strings.Join(l.Resources, ", "))
		}
		inUse := "none"
		if len(l.InUse) > 0 {
			inUse = strings.Join(l.InUse, ", ")
		}
		fmt.Fprintf(&b, "; labels in use in this range: %s", inUse)
	} else if c.Filters.Kind == "" && c.Filters.Name == "" {
		b.WriteString("; no filters")
	}
	if c.Filters.Kind != "" {
		fmt.Fprintf(&b, "; kind %s", c.Filters.Kind)
	}
	if c.Filters.Name != "" {
		fmt.Fprintf(&b, "; name %s", c.Filters.Name)
	}
	fmt.Fprintf(&b, "; %d row(s)", c.RowCount)
	return b.String()
}

// evidence answers GET /api/v1/evidence/:kind?since=&until=&format=json|csv[&label=k=v]
// (privileged)[&kind=policy|resource&name=N] (changes) (default: the last 30 days, JSON). The columns are documented in docs/evidence.md.
func (a *API) evidence(c echo.Context) error {
	kind := c.Param("kind")
	q, ok := evidenceReports[kind]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "evidence is one of access, privileged, denials, grants, changes, agents")
	}
	cov := Coverage{Kind: kind, Until: time.Now().UTC(), UntilDefault: true, SinceDefault: true}
	for _, p := range []struct {
		name string
		t    *time.Time
		def  *bool
	}{{"since", &cov.Since, &cov.SinceDefault}, {"until", &cov.Until, &cov.UntilDefault}} {
		if v := c.QueryParam(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time", p.name, v))
			}
			*p.t, *p.def = t.UTC(), false
		}
	}
	if cov.SinceDefault {
		cov.Since = cov.Until.Add(-30 * 24 * time.Hour)
	}
	if !cov.Since.Before(cov.Until) {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("since (%s) must be before until (%s)", cov.Since.Format(time.RFC3339), cov.Until.Format(time.RFC3339)))
	}
	format := c.QueryParam("format")
	if format != "" && format != "json" && format != "csv" {
		return echo.NewHTTPError(http.StatusBadRequest, "format is json or csv")
	}
	ctx := c.Request().Context()
	// Rows are deduplicated by event id (grouping, LIMIT 1 BY) rather than with FINAL,
	// which merges the whole table on one thread; the date bounds let ClickHouse skip the
	// partitions outside the range (a day wider on each side: the date column is in the
	// server's time zone). Dates and microseconds come from parsed times, never from text.
	rng := fmt.Sprintf("date >= '%s' AND date <= '%s' AND time_us >= %d AND time_us < %d",
		cov.Since.AddDate(0, 0, -1).Format("2006-01-02"), cov.Until.AddDate(0, 0, 1).Format("2006-01-02"),
		cov.Since.UnixMicro(), cov.Until.UnixMicro())
	var args []any
	if kind == "privileged" {
		lf := &LabelFilter{Label: c.QueryParam("label")}
		if lf.Label == "" {
			lf.Label, lf.Default = DefaultPrivilegedLabel, true
		}
		quoted, err := labelNeedle(lf.Label)
		if err != nil {
			return err
		}
		if err := a.labelsInRange(ctx, rng, lf); err != nil {
			return a.storeError(err)
		}
		cov.Filters.Label = lf
		args = append(args, quoted)
	}
	changes := ""
	if kind == "changes" {
		switch v := c.QueryParam("kind"); v {
		case "":
		case "policy", "resource":
			changes += " AND visitParamExtractString(payload, 'kind') = ?"
			args, cov.Filters.Kind = append(args, v), v
		default:
			return echo.NewHTTPError(http.StatusBadRequest, "kind is policy or resource")
		}
		if v := c.QueryParam("name"); v != "" {
			changes += " AND visitParamExtractString(payload, 'name') = ?"
			args, cov.Filters.Name = append(args, v), v
		}
	}
	sql := strings.ReplaceAll(q.sql, "{changes}", changes)
	sql = strings.ReplaceAll(sql, "{statements}", statementsSQL)
	sql = strings.ReplaceAll(replaceDB(sql, a.db), "{range}", rng)
	table, err := a.table(ctx, sql, args...)
	if err != nil {
		return a.storeError(err)
	}
	cov.RowCount = len(table)
	b, _ := json.Marshal(cov)
	c.Response().Header().Set(HeaderCoverage, string(b))
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
	return c.JSON(http.StatusOK, struct {
		Coverage
		Columns []string            `json:"columns"`
		Rows    []map[string]string `json:"rows"`
	}{cov, q.columns, out})
}

// labelNeedle checks a label filter (key=value) and returns it as it appears in a
// session.start's labels (a JSON string, quotes included, so that env=prod does not find
// env=production): what the SQL looks for with position(visitParamExtractRaw(payload,
// 'labels'), ?).
func labelNeedle(label string) (string, error) {
	if k, _, ok := strings.Cut(label, "="); !ok || k == "" {
		return "", echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("label: %q is not key=value", label))
	}
	quoted, _ := json.Marshal(label)
	return string(quoted), nil
}

// labelsInRange fills in which resources with a session in the range carry lf's label,
// and every label in use there.
func (a *API) labelsInRange(ctx context.Context, rng string, lf *LabelFilter) error {
	rows, err := a.table(ctx, "SELECT resource, visitParamExtractRaw(payload, 'labels') FROM "+a.db+".events WHERE "+rng+
		" AND type = 'session.start' AND resource != '_config' GROUP BY resource, visitParamExtractRaw(payload, 'labels')")
	if err != nil {
		return err
	}
	lf.Resources, lf.InUse = []string{}, []string{}
	for _, r := range rows {
		var labels []string
		_ = json.Unmarshal([]byte(r[1]), &labels) // absent: none
		for _, l := range labels {
			if !slices.Contains(lf.InUse, l) {
				lf.InUse = append(lf.InUse, l)
			}
			if l == lf.Label && !slices.Contains(lf.Resources, r[0]) {
				lf.Resources = append(lf.Resources, r[0])
			}
		}
	}
	slices.Sort(lf.Resources)
	slices.Sort(lf.InUse)
	return nil
}

// table runs a query whose columns are String or UInt64 and returns its rows as text.
func (a *API) table(ctx context.Context, sql string, args ...any) ([][]string, error) {
	rows, err := a.ch.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
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
			return nil, err
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
	return table, rows.Err()
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
