package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// The chaos load: clients on both resources (demo buffered, demo-strict strict), each
// numbering its statements, so that the checks know exactly which were answered. Even
// statements differ by a column alias, which the decision cache keys on, so each needs a
// decision of the policy service; odd ones differ by a literal only, so after the first
// they are decided from the proxy's cache, and reach the audit path without the policy
// service (what a NATS outage then does to them is the audit path's doing alone).

// chaosMarker finds a statement's client and number in its SQL.
var chaosMarker = regexp.MustCompile(`chaos_(\d+)_(\d+)_`)

// chaosSQL is client k's statement i.
func chaosSQL(k, i int) string {
	if i%2 == 0 {
		return fmt.Sprintf("select id as chaos_%d_%d_ from orders limit 1", k, i)
	}
	return fmt.Sprintf("select 'chaos_%d_%d_' as m, id from orders limit 1", k, i)
}

// stmtRecord is one statement as its client saw it.
type stmtRecord struct {
	i          int
	start, end time.Time
	ok         bool   // answered: the client has its completion
	err        string // what the client got otherwise
}

// loadClient is one client of the load.
type loadClient struct {
	k      int
	db     string // the resource
	strict bool
	kind   string // sql, http (chaos_http_test.go) or ssh (chaos_ssh_test.go)

	mu      sync.Mutex
	records []stmtRecord
}

type chaosLoad struct {
	clients []*loadClient
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startLoad starts n SQL clients, alternating between the buffered and the strict
// resource, then two HTTP clients (chaos-api, chaos-api-strict) and two SSH clients
// (chaos-host, chaos-host-strict).
func startLoad(t *testing.T, c *chaosCluster, n int) *chaosLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &chaosLoad{cancel: cancel}
	for k := range n + 4 {
		lc := &loadClient{k: k, db: "demo", kind: "sql"}
		switch {
		case k >= n+2:
			lc.db, lc.kind = "chaos-host", "ssh"
		case k >= n:
			lc.db, lc.kind = "chaos-api", "http"
		}
		if k%2 == 1 {
			lc.db, lc.strict = lc.db+"-strict", true
		}
		l.clients = append(l.clients, lc)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			switch lc.kind {
			case "http":
				lc.runHTTP(ctx, c)
			case "ssh":
				lc.runSSH(ctx, c)
			default:
				lc.run(ctx, c)
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// otherClients are the load's clients of proxy-http and proxy-ssh, after the SQL ones.
const otherClients = 4

// decided says whether the client's statement i needed a decision of the policy service
// (the SQL clients' even ones; every HTTP request and SSH command).
func (lc *loadClient) decided(i int) bool { return lc.kind != "sql" || i%2 == 0 }

func (lc *loadClient) run(ctx context.Context, c *chaosCluster) {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for i := 0; ctx.Err() == nil; i++ {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			var err error
			conn, err = pgconn.Connect(cctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=%s user=svc-orders password=%s sslmode=disable", c.pgPort, lc.db, c.reader))
			cancel()
			if err != nil {
				conn = nil
				lc.connectFailed(ctx, err)
				continue
			}
		}
		r := stmtRecord{i: i, start: time.Now()}
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := conn.Exec(sctx, chaosSQL(lc.k, i)).ReadAll()
		cancel()
		r.end = time.Now()
		if err == nil {
			r.ok = true
		} else {
			r.err = shortErr(err)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || conn.IsClosed() {
				conn.Close(context.Background())
				conn = nil
			}
		}
		if ctx.Err() != nil && !r.ok {
			return // stopped by the test, not refused
		}
		lc.add(r)
	}
}

// connectFailed records a failed connection attempt and waits a little before the next
// (the gateway is down: try again shortly).
func (lc *loadClient) connectFailed(ctx context.Context, err error) {
	lc.add(stmtRecord{i: -1, start: time.Now(), end: time.Now(), err: "connect: " + shortErr(err)})
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
}

func (lc *loadClient) add(r stmtRecord) {
	lc.mu.Lock()
	lc.records = append(lc.records, r)
	lc.mu.Unlock()
}

// snapshot is a copy of the client's records.
func (lc *loadClient) snapshot() []stmtRecord {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return append([]stmtRecord{}, lc.records...)
}

// shortErr is an error in one line, without what differs between occurrences.
func shortErr(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	s = chaosMarker.ReplaceAllString(s, "chaos_K_I_")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// stop ends the load and waits for the clients (idempotent).
func (l *chaosLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// answered counts the answered statements.
func (l *chaosLoad) answered() int {
	n := 0
	for _, lc := range l.clients {
		for _, r := range lc.snapshot() {
			if r.ok {
				n++
			}
		}
	}
	return n
}

func (l *chaosLoad) waitAnswered(t *testing.T, n int, within time.Duration) {
	t.Helper()
	_, ok := waitFor(within, func() bool { return l.answered() >= n })
	require.True(t, ok, "the load did not get %d statements answered within %s: %v", n, within, l.errorsSince(time.Time{}))
}

// recoveredAfter waits until every client which selects has had a statement answered that it sent at or
// after since, and returns how long after since the last of them was answered.
func (l *chaosLoad) recoveredAfter(since time.Time, within time.Duration, which func(*loadClient) bool) (time.Duration, bool) {
	var worst time.Duration
	_, ok := waitFor(within, func() bool {
		worst = 0
		for _, lc := range l.clients {
			if !which(lc) {
				continue
			}
			found := false
			for _, r := range lc.snapshot() {
				if r.ok && !r.start.Before(since) {
					worst = max(worst, r.end.Sub(since))
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	})
	return worst, ok
}

// wentOnSince waits until a strict statement and one that needed a decision (even), both
// sent at or after since, were answered, and returns how long after since the later of
// the two was.
func (l *chaosLoad) wentOnSince(since time.Time, within time.Duration) (time.Duration, bool) {
	var took time.Duration
	_, ok := waitFor(within, func() bool {
		var strict, decided time.Duration
		for _, lc := range l.clients {
			for _, r := range lc.snapshot() {
				if !r.ok || r.start.Before(since) {
					continue
				}
				at := r.end.Sub(since)
				if lc.strict && (strict == 0 || at < strict) {
					strict = at
				}
				if lc.decided(r.i) && (decided == 0 || at < decided) {
					decided = at
				}
			}
		}
		took = max(strict, decided)
		return strict > 0 && decided > 0
	})
	return took, ok
}

// longestGap is the longest time in [from, to] without an answer to a statement of a kind
// (strict: on the strict resource; else: one that needed a decision), the answers of every
// client together: how long that kind of statement was held up at worst.
func (l *chaosLoad) longestGap(from, to time.Time, strict bool) time.Duration {
	var ends []time.Time
	for _, lc := range l.clients {
		for _, r := range lc.snapshot() {
			if !r.ok || r.end.Before(from) || r.end.After(to) {
				continue
			}
			if strict && lc.strict || !strict && lc.decided(r.i) {
				ends = append(ends, r.end)
			}
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	gap, last := time.Duration(0), from
	for _, e := range append(ends, to) {
		gap = max(gap, e.Sub(last))
		last = e
	}
	return gap
}

// windowCounts are what the load did in a time window.
type windowCounts struct {
	okBuffered, okStrict     int
	failBuffered, failStrict int // statements refused or failed
	connectFailed            int // connection attempts that failed
	// okInside are statements sent and answered wholly inside the window, by kind; those of
	// the clients of proxy-http and proxy-ssh also on their own.
	okInsideUncached, okInsideStrict           int
	okInsideUncachedOther, okInsideStrictOther int
}

// counts counts the statements sent in [from, to).
func (l *chaosLoad) counts(from, to time.Time) windowCounts {
	var w windowCounts
	for _, lc := range l.clients {
		for _, r := range lc.snapshot() {
			if r.start.Before(from) || !r.start.Before(to) {
				continue
			}
			if r.i < 0 {
				w.connectFailed++
				continue
			}
			switch {
			case r.ok && lc.strict:
				w.okStrict++
			case r.ok:
				w.okBuffered++
			case lc.strict:
				w.failStrict++
			default:
				w.failBuffered++
			}
			if r.ok && r.end.Before(to) {
				if lc.decided(r.i) {
					w.okInsideUncached++
					if lc.kind != "sql" {
						w.okInsideUncachedOther++
					}
				}
				if lc.strict {
					w.okInsideStrict++
					if lc.kind != "sql" {
						w.okInsideStrictOther++
					}
				}
			}
		}
	}
	return w
}

// failedSince says whether a statement or a connection failed at or after since.
func (l *chaosLoad) failedSince(since time.Time) bool {
	for _, lc := range l.clients {
		for _, r := range lc.snapshot() {
			if !r.ok && !r.start.Before(since) {
				return true
			}
		}
	}
	return false
}

// errorsSince lists the errors the clients got for statements sent at or after since, most
// frequent first, with their counts.
func (l *chaosLoad) errorsSince(since time.Time) []string {
	return l.errorsBetween(since, time.Now().Add(time.Hour))
}

func (l *chaosLoad) errorsBetween(from, to time.Time) []string {
	n := map[string]int{}
	for _, lc := range l.clients {
		for _, r := range lc.snapshot() {
			if !r.ok && !r.start.Before(from) && r.start.Before(to) {
				n[r.err]++
			}
		}
	}
	errs := make([]string, 0, len(n))
	for e := range n {
		errs = append(errs, e)
	}
	sort.Slice(errs, func(i, j int) bool { return n[errs[i]] > n[errs[j]] || n[errs[i]] == n[errs[j]] && errs[i] < errs[j] })
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = fmt.Sprintf("%d× %s", n[e], e)
	}
	return out
}

// lastAnswered is each client's last answered statement number (-1: none), by client.
func (l *chaosLoad) lastAnswered() map[int]int {
	out := map[int]int{}
	for _, lc := range l.clients {
		out[lc.k] = -1
		for _, r := range lc.snapshot() {
			if r.ok {
				out[lc.k] = r.i
			}
		}
	}
	return out
}
