package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Retention drops the partitions of the audit trail (a resource's month) whose newest event
// is older than the resource's retention period, and records each run that dropped
// something as an audit.retention event.
type Retention struct {
	Database string
	// Cluster is the ClickHouse cluster of clickhouse.cluster ("" for one server): the
	// partitions are then those of events_local on every shard, dropped ON CLUSTER.
	Cluster string
	CH      driver.Conn
	Config  config.Retention
	// Labels returns a resource's labels (false for a resource that no longer exists).
	Labels func(resource string) (map[string]string, bool)
	// Record publishes the audit.retention event.
	Record func(ctx context.Context, e schemas.Event) error
	// Claim, when set, makes a scheduled run happen once per interval among replicas: it
	// returns true to exactly one caller per key.
	Claim func(ctx context.Context, key string) (bool, error)
	Log   *slog.Logger
}

// partitionExpr is a partition of the events table as system.parts shows it: the resource
// (a configured name, or _config) and the month.
var partitionExpr = regexp.MustCompile(`^\('([A-Za-z0-9_.\-]*)',(\d{6})\)$`)

type partition struct {
	schemas.RetainedPartition
	expr string
}

// Plan lists the partitions a run at now would drop, oldest first.
func (r *Retention) Plan(ctx context.Context, now time.Time) ([]partition, error) {
	// On a cluster, system.parts of one server shows its own shard only: cluster() asks one
	// replica of every shard.
	parts, table := "system.parts", "events"
	if r.Cluster != "" {
		parts, table = "cluster('"+r.Cluster+"', system, parts)", "events_local"
	}
	rows, err := r.CH.Query(ctx, `SELECT partition, max(max_date), sum(rows) FROM `+parts+`
		WHERE database = ? AND table = ? AND active GROUP BY partition`, r.Database, table)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	defer rows.Close()
	var out []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.expr, &p.Newest, &p.Events); err != nil {
			return nil, fmt.Errorf("list partitions: %w", err)
		}
		m := partitionExpr.FindStringSubmatch(p.expr)
		if m == nil {
			r.Log.Warn("retention: partition not of the form (resource, month); left alone", "partition", p.expr)
			continue
		}
		month, _ := strconv.ParseUint(m[2], 10, 32)
		p.Resource, p.Month = m[1], uint32(month)
		keep, rule := r.keep(p.Resource)
		if keep <= 0 {
			continue
		}
		// The partition goes once its newest day has entirely passed out of the period.
		if p.Newest.Add(24 * time.Hour).After(now.Add(-keep)) {
			continue
		}
		p.Keep, p.Rule = keep.String(), rule
		p.Newest = p.Newest.UTC()
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Month != out[j].Month {
			return out[i].Month < out[j].Month
		}
		return out[i].Resource < out[j].Resource
	})
	return out, nil
}

// dropPartition is the statement that drops a partition: on a cluster, from events_local
// on every server (ClickHouse runs it on one replica per shard; the others follow
// through ZooKeeper).
func (r *Retention) dropPartition(expr string) string {
	if r.Cluster != "" {
		return "ALTER TABLE " + r.Database + ".events_local ON CLUSTER " + r.Cluster + " DROP PARTITION " + expr
	}
	return "ALTER TABLE " + r.Database + ".events DROP PARTITION " + expr
}

// keep is the retention period of a resource and the rule that sets it.
func (r *Retention) keep(resource string) (time.Duration, string) {
	labels, ok := r.Labels(resource)
	if ok {
		for _, rule := range r.Config.Rules {
			if matches(labels, rule.Labels) {
				return rule.Keep, labelString(rule.Labels)
			}
		}
	}
	return r.Config.Default, "default"
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func labelString(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// Run drops what Plan lists (nothing when dryRun) and records the run when it dropped or
// failed to drop anything. It returns what it did (or would do).
func (r *Retention) Run(ctx context.Context, now time.Time, who schemas.Identity, source string, dryRun bool) (*schemas.AuditRetention, error) {
	plan, err := r.Plan(ctx, now)
	if err != nil {
		return nil, err
	}
	res := &schemas.AuditRetention{Source: source, Dropped: []schemas.RetainedPartition{}}
	for _, p := range plan {
		if !dryRun {
			// ALTER ... DROP PARTITION takes the partition expression; expr matched
			// partitionExpr, so it holds nothing but a plain name and a number.
			if err := r.CH.Exec(ctx, r.dropPartition(p.expr)); err != nil {
				res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", p.expr, err))
				r.Log.Error("retention: drop partition failed", "partition", p.expr, "err", err)
				continue
			}
		}
		res.Dropped = append(res.Dropped, p.RetainedPartition)
		res.Events += p.Events
	}
	if dryRun || (len(res.Dropped) == 0 && len(res.Failed) == 0) {
		return res, nil
	}
	r.Log.Info("retention run", "dropped", len(res.Dropped), "events", res.Events, "failed", len(res.Failed), "source", source)
	// What was dropped is gone: the record of it must not be. Retry until it is taken.
	backoff := 100 * time.Millisecond
	for {
		err := r.Record(ctx, schemas.Event{Type: schemas.TypeAuditRetention, Identity: who, Payload: res.AppendJSON(nil)})
		if err == nil {
			return res, nil
		}
		r.Log.Warn("retention: recording the run failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("retention: partitions dropped but the run was not recorded: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Schedule runs retention every interval until ctx ends (the first one an interval after
// start; `gatehouse audit retention` runs one at any time).
func (r *Retention) Schedule(ctx context.Context, who schemas.Identity) {
	wait := r.Config.Interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := r.scheduled(ctx, time.Now(), who); err != nil && ctx.Err() == nil {
			r.Log.Error("retention run failed", "err", err)
		}
		wait = r.Config.Interval
	}
}

// scheduled is one scheduled run: only the replica that claims this interval runs it (when
// the claim cannot be made, it runs anyway: a second run finds nothing left to drop).
func (r *Retention) scheduled(ctx context.Context, now time.Time, who schemas.Identity) (bool, error) {
	if r.Claim != nil {
		key := "retention." + strconv.FormatInt(now.Truncate(r.Config.Interval).Unix(), 10)
		ok, err := r.Claim(ctx, key)
		switch {
		case err != nil:
			r.Log.Warn("retention: cannot claim this interval's run; running it anyway", "err", err)
		case !ok:
			r.Log.Debug("retention: another replica runs this interval", "key", key)
			return false, nil
		}
	}
	_, err := r.Run(ctx, now, who, "schedule", false)
	return true, err
}

// RetentionAPI serves POST /api/v1/audit/retention[?dry_run=true] to administrators: a
// run now (recorded with their identity), or what one would drop.
type RetentionAPI struct {
	Retention *Retention
	Verifier  *identity.Verifier
	Admins    []string
}

// Register adds the route.
func (a *RetentionAPI) Register(e *echo.Echo) {
	e.POST("/api/v1/audit/retention", a.run, a.Verifier.Middleware(a.Admins, "admin"))
}

func (a *RetentionAPI) run(c echo.Context) error {
	dry := false
	if v := c.QueryParam("dry_run"); v != "" {
		var err error
		if dry, err = strconv.ParseBool(v); err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("dry_run: %q is not true or false", v))
		}
	}
	if !a.Retention.Config.Enabled() {
		return echo.NewHTTPError(http.StatusConflict, "no retention is configured (audit.retention): the trail is kept for ever")
	}
	res, err := a.Retention.Run(c.Request().Context(), time.Now(), identity.FromContext(c).Identity, "api", dry)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	}
	return c.JSON(http.StatusOK, res)
}
