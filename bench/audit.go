package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/identity"
)

// AuditOptions configure the audit query bench.
type AuditOptions struct {
	Events       int // generated events
	ReplayEvents int // events of the one long session replayed
	Runs         int // runs per query (the median is reported)
	Log          *slog.Logger
	Out          io.Writer
}

// AuditTiming is one query's measured times.
type AuditTiming struct {
	Name       string        `json:"name"`
	FirstByte  time.Duration `json:"first_byte_ns"` // median time to the response's first byte
	Total      time.Duration `json:"total_ns"`      // median time to the whole response
	Bytes      int64         `json:"bytes"`
	Runs       int           `json:"runs"`
	AllRunsSec []float64     `json:"all_runs_total_sec"`
}

// AuditResult is what the audit bench measured.
type AuditResult struct {
	Events       int           `json:"events"`
	ReplayEvents int           `json:"replay_events"`
	Generate     time.Duration `json:"generate_ns"`
	Timings      []AuditTiming `json:"timings"`
}

// Audit generates a realistic audit trail in a local ClickHouse (sessions of 40 events over
// 90 days: statements, decisions with 2% denied and 10% writes, results; approvals, grants
// and policy changes; four resources, two labelled production) plus one session of
// ReplayEvents events, starts the query API, and times the evidence reports over the whole
// range and the long session's replay through HTTP, as an auditor's client sees them.
func Audit(ctx context.Context, o AuditOptions) (*AuditResult, error) {
	if o.Runs < 1 {
		o.Runs = 3
	}
	work, err := os.MkdirTemp("", "gh-bench-audit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Out, "starting ClickHouse ...")
	ch, err := localdb.StartClickHouse(ctx, filepath.Join(work, "clickhouse"), 0)
	if err != nil {
		return nil, err
	}
	defer ch.Stop()
	conn, err := ingest.Open(config.ClickHouse{Address: ch.Addr(), Username: "default"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := ingest.Migrate(ctx, conn, "gatehouse"); err != nil {
		return nil, err
	}

	end := time.Now().UTC().Truncate(time.Second)
	start := end.Add(-90 * 24 * time.Hour)
	fmt.Fprintf(o.Out, "generating %d events and a session of %d ...\n", o.Events, o.ReplayEvents)
	t0 := time.Now()
	for _, q := range generateSQL(o.Events, start, end) {
		if err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("generate: %w\n%s", err, q)
		}
	}
	if err := insertLongSession(ctx, conn, o.ReplayEvents, end.Add(-24*time.Hour)); err != nil {
		return nil, fmt.Errorf("generate the long session: %w", err)
	}
	// Let the parts settle as they would in a trail written over months.
	if err := conn.Exec(ctx, "OPTIMIZE TABLE gatehouse.events FINAL"); err != nil {
		return nil, fmt.Errorf("optimize: %w", err)
	}
	res := &AuditResult{Events: o.Events, ReplayEvents: o.ReplayEvents, Generate: time.Since(t0)}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM gatehouse.events").Scan(&n); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "%d events in ClickHouse (generated in %s)\n", n, res.Generate.Round(time.Millisecond))

	api, token, stop, err := startQueryAPI(ctx, work, ch.Addr(), o.Log)
	if err != nil {
		return nil, err
	}
	defer stop()
	rng := url.Values{"since": {start.Add(-time.Hour).Format(time.RFC3339)}, "until": {end.Add(time.Hour).Format(time.RFC3339)}}
	type probe struct{ name, path string }
	probes := []probe{{"replay of the long session", "/api/v1/sessions/replay-long"}}
	for _, kind := range []string{"access", "privileged", "denials", "grants", "changes"} {
		q := url.Values{"format": {"csv"}}
		for k, v := range rng {
			q[k] = v
		}
		if kind == "privileged" {
			q.Set("label", "env=production")
		}
		probes = append(probes, probe{"evidence " + kind, "/api/v1/evidence/" + kind + "?" + q.Encode()})
	}
	fmt.Fprintln(o.Out, "")
	fmt.Fprintf(o.Out, "%-28s %12s %12s %12s\n", "query (median of runs)", "first byte", "total", "bytes")
	for _, p := range probes {
		tm := AuditTiming{Name: p.name, Runs: o.Runs}
		var firsts, totals []time.Duration
		for i := 0; i < o.Runs; i++ {
			first, total, size, err := timeGet(ctx, api+p.path, token)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			firsts, totals = append(firsts, first), append(totals, total)
			tm.AllRunsSec = append(tm.AllRunsSec, total.Seconds())
			tm.Bytes = size
		}
		tm.FirstByte, tm.Total = median(firsts), median(totals)
		res.Timings = append(res.Timings, tm)
		fmt.Fprintf(o.Out, "%-28s %12s %12s %12d\n", p.name, tm.FirstByte.Round(time.Millisecond), tm.Total.Round(time.Millisecond), tm.Bytes)
	}
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// timeGet GETs url and returns the time to the first byte of the body, to its end, and its
// size.
func timeGet(ctx context.Context, u, token string) (first, total time.Duration, size int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	var t0 time.Time
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotFirstResponseByte: func() { first = time.Since(t0) },
	}))
	t0 = time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	size, err = io.Copy(io.Discard, resp.Body)
	total = time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("%s", resp.Status)
	}
	return first, total, size, err
}

// startQueryAPI runs the query API (with embedded NATS and the dev issuer) in this process
// and mints an auditor token.
func startQueryAPI(ctx context.Context, work, chAddr string, log *slog.Logger) (base, token string, stop func(), err error) {
	cfg, err := config.Parse(fmt.Appendf(nil, `
data_dir: %s/gatehouse
log: {level: warn}
server: {http_listen: "127.0.0.1:0"}
identity: {dev_issuer: true}
clickhouse: {address: "%s", database: gatehouse}
query: {auditor_groups: [auditors]}
`, work, chAddr))
	if err != nil {
		return "", "", nil, err
	}
	if err := cfg.Validate(); err != nil {
		return "", "", nil, err
	}
	a := app.New(cfg, log)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx, []string{"nats", "dev-issuer", "query"}) }()
	for !a.Ready() {
		select {
		case err := <-done:
			cancel()
			return "", "", nil, fmt.Errorf("gatehouse: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d, err := identity.NewDevIssuer(a.DevIssuerURL(), cfg.DataDir, log)
	if err == nil {
		token, err = d.Mint(identity.TokenRequest{Subject: "auditor", Groups: []string{"auditors"}, TTL: 12 * time.Hour})
	}
	if err != nil {
		cancel()
		<-done
		return "", "", nil, err
	}
	return "http://" + a.HTTPAddr(), token, func() { cancel(); <-done }, nil
}

// generateSQL is the INSERT ... SELECTs that fill the events table: ClickHouse generates
// the rows itself (functions of the row number), so ten million take seconds, not minutes.
func generateSQL(events int, start, end time.Time) []string {
	cols := ingest.EventColumns
	span := end.Unix() - start.Unix()
	sessions := fmt.Sprintf(`
INSERT INTO gatehouse.events (%[1]s)
SELECT toDate(t), toDateTime(t), toUInt64(t) * 1000000 + n %% 1000000, concat('e', toString(n)), type, code,
	concat('s', toString(s)), toUInt64(seq), resource, sub, '', 'https://idp.example/', [grp], 'service', '', toUInt64(3), '', '',
	payload, toUInt64(n), toUInt32(0)
FROM (
	SELECT n, s, seq, t, resource, sub, grp, type, code,
		multiIf(
			type = 'session.start', concat('{"protocol":"postgres","client_addr":"10.0.', toString(s %% 250), '.7","database":"app","labels":[',
				if(resource LIKE '%%-prod', '"env=production"', '"env=dev"'), ',"team=orders"]}'),
			type = 'db.query', concat('{"query_id":', toString(q), ',"sql":"', if(is_write, 'UPDATE orders SET status = ''shipped'' WHERE id = ', 'SELECT id, status, total FROM orders WHERE id = '), toString(n %% 100000), '","protocol":"extended"}'),
			type = 'decision', concat('{"query_id":', toString(q), ',"effect":"', effect, '","policy":"orders","rule":"', if(effect = 'deny', 'no-writes-for-readers', 'reads'),
				'","reason":"', if(effect = 'deny', 'orders are read-only for this service', ''), '","revision":3,"fingerprint":"', if(is_write, 'f1a2b3c4d5e6f708', '0a1b2c3d4e5f6071'),
				'","kinds":["', if(is_write, 'update', 'select'), '"],"tables":["public.orders"],"cached":true}'),
			type = 'db.result.chunk', concat('{"query_id":', toString(q), ',"columns":[{"name":"id","table_oid":16390,"attnum":1,"type_oid":23},{"name":"status","table_oid":16390,"attnum":2,"type_oid":25}],"rows":[["', toString(n %% 100000), '","open"]]}'),
			type = 'db.query.done', concat('{"query_id":', toString(q), ',"status":"ok","command_tags":["', if(is_write, 'UPDATE 1', 'SELECT 1'), '"],"rows":1,"rows_recorded":1,"duration_us":', toString(80 + n %% 400), '}'),
			'{"reason":"client"}') AS payload
	FROM (
		SELECT number AS n, intDiv(number, 40) AS s, number %% 40 + 1 AS seq, intDiv(seq - 2, 4) + 1 AS q,
			%[2]d + intDiv(number * %[3]d, %[4]d) AS t,
			arrayElement(['orders-prod', 'billing-prod', 'analytics-dev', 'reports-dev'], intHash32(s) %% 4 + 1) AS resource,
			concat('svc-', toString(intHash32(s) %% 200)) AS sub,
			concat('team-', toString(intHash32(s) %% 20)) AS grp,
			multiIf(seq = 1, 'session.start', seq = 40, 'session.end', (seq - 2) %% 4 = 0, 'db.query', (seq - 2) %% 4 = 1, 'decision',
				(seq - 2) %% 4 = 2, 'db.result.chunk', 'db.query.done') AS type,
			multiIf(seq = 1, 'GH1000', seq = 40, 'GH1001', (seq - 2) %% 4 = 0, 'GH2000', (seq - 2) %% 4 = 1, 'GH3000', (seq - 2) %% 4 = 2, 'GH2001', 'GH2002') AS code,
			intHash32(s * 100 + q) %% 10 = 0 AS is_write,
			if(intHash32(s * 100 + q) %% 50 = 1, 'deny', 'allow') AS effect
		FROM system.numbers LIMIT %[4]d
	)
)`, cols, start.Unix(), span, events)
	// Control events, one session each: an approval (requested, decided) for every 500th
	// session's writes, a grant created and expired for every 5,000th, a policy change for
	// every 20,000th.
	control := fmt.Sprintf(`
INSERT INTO gatehouse.events (%[1]s)
SELECT toDate(t), toDateTime(t), toUInt64(t) * 1000000 + k, concat('c', toString(number)), type, code,
	if(type LIKE 'approval.%%', concat('s', toString(s)), concat('c', toString(number))), toUInt64(1), '_config', sub, '', 'https://idp.example/',
	['approvers'], 'human', '', toUInt64(3), '', '', payload, toUInt64(0), toUInt32(0)
FROM (
	SELECT number, intDiv(number, 2) * 500 AS s, number %% 2 AS k,
		%[2]d + intDiv(s * 40 * %[3]d, %[4]d) + k * 90 AS t,
		multiIf(number %% 40 = 0, if(k = 0, 'grant.created', 'grant.expired'), number %% 400 = 2, 'policy.changed', if(k = 0, 'approval.requested', 'approval.decided')) AS type,
		multiIf(type = 'grant.created', 'GH6001', type = 'grant.expired', 'GH6002', type = 'policy.changed', 'GH4000', k = 0, 'GH5000', 'GH5001') AS code,
		if(k = 0, concat('svc-', toString(intHash32(s) %% 200)), concat('approver-', toString(number %% 7))) AS sub,
		multiIf(
			type = 'grant.created', concat('{"grant_id":"g', toString(number), '","resource":"orders-prod","role":"dba","expires":"2026-01-01T00:00:00Z","approved_by":["approver-1"]}'),
			type = 'grant.expired', concat('{"grant_id":"g', toString(number - 1), '","resource":"orders-prod","role":"dba","ended_sessions":true}'),
			type = 'policy.changed', '{"kind":"policy","name":"orders","action":"updated","diff":"-  effect: allow\\n+  effect: deny\\n","source":"api"}',
			k = 0, concat('{"approval_id":"a', toString(s), '","kind":"statement","approvers":["approvers"],"required":1,"deadline":"2026-01-01T00:00:00Z"}'),
			concat('{"approval_id":"a', toString(s), '","decision":"approve","by":"approver-', toString(number %% 7), '","reason":"ok"}')) AS payload
	FROM system.numbers LIMIT %[5]d
)`, cols, start.Unix(), span, events, 2*(events/40/500))
	return []string{strings.TrimSpace(sessions), strings.TrimSpace(control)}
}

// insertLongSession writes one session of n events (statements and their completions) with
// a valid hash chain, so its replay checks every event as a real one would.
func insertLongSession(ctx context.Context, conn driver.Conn, n int, at time.Time) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO gatehouse.events ("+ingest.EventColumns+")")
	if err != nil {
		return err
	}
	id := schemas.Identity{Subject: "dba-oncall", Issuer: "https://idp.example/", Groups: []string{"dba"}, Kind: "human"}
	prev := ""
	for i := 0; i < n; i++ {
		var p schemas.Payload
		if i%2 == 0 {
			p = &schemas.DbQuery{QueryID: uint64(i/2 + 1), SQL: fmt.Sprintf("SELECT * FROM orders WHERE id = %d", i), Protocol: "simple"}
		} else {
			p = &schemas.DbQueryDone{QueryID: uint64(i/2 + 1), Status: "ok", CommandTags: []string{"SELECT 1"}, Rows: 1, RowsRecorded: 1, DurationUS: 120}
		}
		t := at.Add(time.Duration(i) * time.Millisecond).UTC()
		e := schemas.Event{ID: fmt.Sprintf("r%d", i), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: t, SessionID: "replay-long",
			Seq: uint64(i + 1), Identity: id, Resource: "orders-prod", PolicyRevision: 3, PrevHash: prev, Payload: p.AppendJSON(nil)}
		if e.Hash, err = e.ComputeHash(); err != nil {
			return err
		}
		prev = e.Hash
		if err := b.Append(t, t, uint64(t.UnixMicro()), e.ID, e.Type, e.Code, e.SessionID, e.Seq, e.Resource, id.Subject, id.Name, id.Issuer, id.Groups,
			id.Kind, "", e.PolicyRevision, e.PrevHash, e.Hash, string(e.Payload), uint64(0), uint32(0)); err != nil {
			return err
		}
	}
	return b.Send()
}
