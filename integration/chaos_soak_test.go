package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The soak: many concurrent sessions running a sustained mix of statements through the
// proxy, while the proxy's /metrics is sampled; memory, goroutines and open files must
// stay flat once every session is open.

// soakMetrics are the proxy's gauges the soak samples.
var soakMetrics = []string{"go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "go_goroutines", "process_open_fds"}

type soakSample struct {
	at     time.Duration // since the soak began
	values []float64     // soakMetrics, in order
}

type soakResult struct {
	sessions, opened  int
	duration          time.Duration
	answered, refused int64
	samples           []soakSample
	growth            []float64 // last quarter's mean over the second quarter's, by metric
	csv, svg          string
	failures, notes   []string
}

// soakMix is what each soak session runs in turn: cached and uncached reads, a masked
// read, an aggregate, and a statement the policy denies.
func soakMix(k, i int) string {
	switch i % 5 {
	case 0:
		return fmt.Sprintf("select id as soak_%d_%d from orders limit 1", k, i)
	case 1:
		return fmt.Sprintf("select '%d-%d' as m, * from orders limit 5", k, i)
	case 2:
		return "select id, email, card_number from customers limit 3"
	case 3:
		return "select count(*) from orders"
	default:
		return "delete from orders where id = -1" // denied: orders-readers only read
	}
}

// runSoak runs o.soakClients sessions for o.soak.
func runSoak(t *testing.T, c *chaosCluster, o chaosOptions) *soakResult {
	r := &soakResult{sessions: o.soakClients, duration: o.soak}
	pace := time.Second
	envDuration(t, "GATEHOUSE_CHAOS_SOAK_PACE", &pace)
	every := min(max(o.soak/60, time.Second), 5*time.Second)
	t.Logf("soak: %d sessions, a statement each every %s, for %s; /metrics every %s", o.soakClients, pace, o.soak, every)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var opened, answered, refused atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int{} // what refused the sessions and statements, for the report
	noteErr := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if msg := err.Error(); len(errs) < 20 || errs[msg] > 0 {
			errs[msg]++
		}
	}
	began := time.Now()
	// Sessions are opened 16 at a time, as a pool fills: PostgreSQL here takes 20–40 ms per
	// connection, so a thousand opened at once would outlast proxy.postgres.startup_timeout
	// (the proxy opens max_connecting at once per resource and refuses the rest, saying so).
	opening := make(chan struct{}, 16)
	for k := range o.soakClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := "demo"
			if k%4 == 3 {
				db = "demo-strict"
			}
			select {
			case opening <- struct{}{}:
			case <-ctx.Done():
				return
			}
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
			conn, err := pgconn.Connect(cctx, fmt.Sprintf("host=127.0.0.1 port=%s dbname=%s user=svc-orders password=%s sslmode=disable", c.pgPort, db, c.reader))
			ccancel()
			<-opening
			if err != nil {
				if ctx.Err() == nil {
					refused.Add(1)
					noteErr(err)
				}
				return
			}
			defer conn.Close(context.Background())
			opened.Add(1)
			for i := 0; ctx.Err() == nil; i++ {
				sctx, scancel := context.WithTimeout(ctx, time.Minute)
				_, err := conn.Exec(sctx, soakMix(k, i)).ReadAll()
				scancel()
				if err == nil || i%5 == 4 { // the denied statement is answered with its refusal
					answered.Add(1)
				} else if ctx.Err() == nil {
					refused.Add(1)
					noteErr(err)
				}
				if conn.IsClosed() {
					return
				}
				select { // the session's pace: a sustained mix, not a benchmark
				case <-ctx.Done():
				case <-time.After(pace):
				}
			}
		}()
	}
	metrics := c.bases["proxy-postgres"] + "/metrics"
	for time.Since(began) < o.soak {
		time.Sleep(every) // the sampling interval
		if v, err := scrape(metrics); err == nil {
			r.samples = append(r.samples, soakSample{at: time.Since(began), values: v})
		} else {
			r.notes = append(r.notes, fmt.Sprintf("at %s: /metrics: %v", time.Since(began).Round(time.Second), err))
		}
	}
	cancel()
	wg.Wait()
	r.opened, r.answered, r.refused = int(opened.Load()), answered.Load(), refused.Load()
	for msg, n := range errs {
		r.notes = append(r.notes, fmt.Sprintf("%d× %s", n, msg))
	}
	if r.opened < r.sessions {
		r.failures = append(r.failures, fmt.Sprintf("only %d of %d sessions opened", r.opened, r.sessions))
	}
	if r.refused > r.answered/100 {
		r.failures = append(r.failures, fmt.Sprintf("%d statements failed against %d answered", r.refused, r.answered))
	}
	r.judge(o.soak >= 2*time.Minute)
	r.csv = filepath.Join(o.report, "soak.csv")
	r.svg = filepath.Join(o.report, "soak.svg")
	if err := os.WriteFile(r.csv, r.csvBytes(), 0o644); err != nil {
		r.failures = append(r.failures, err.Error())
	}
	if err := os.WriteFile(r.svg, r.svgBytes(), 0o644); err != nil {
		r.failures = append(r.failures, err.Error())
	}
	t.Logf("soak: %d sessions opened of %d, %d statements answered, %d failed; growth (last quarter / second quarter) %v; %s, %s",
		r.opened, r.sessions, r.answered, r.refused, r.growthStrings(), r.csv, r.svg)
	return r
}

// scrape reads soakMetrics from a Prometheus text exposition.
func scrape(url string) ([]float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	out := make([]float64, len(soakMetrics))
	found := make([]bool, len(soakMetrics))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for i, m := range soakMetrics {
			if name == m {
				if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					out[i], found[i] = f, true
				}
			}
		}
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("no %s", soakMetrics[i])
		}
	}
	return out, sc.Err()
}

// judge compares the mean of the last quarter of the samples with that of the second
// (the first is the sessions opening): memory may grow by half, goroutines and open files
// by a tenth (plus a small constant). enforce: a short soak only reports.
func (r *soakResult) judge(enforce bool) {
	n := len(r.samples)
	if n < 8 {
		r.notes = append(r.notes, fmt.Sprintf("%d samples: too few to judge growth", n))
		return
	}
	mean := func(from, to, m int) float64 {
		s := 0.0
		for _, x := range r.samples[from:to] {
			s += x.values[m]
		}
		return s / float64(to-from)
	}
	limits := []struct{ ratio, slack float64 }{{1.5, 0}, {1.5, 0}, {1.1, 50}, {1.1, 20}}
	for m, name := range soakMetrics {
		early, late := mean(n/4, n/2, m), mean(n-n/4, n, m)
		r.growth = append(r.growth, late/early)
		if late > early*limits[m].ratio+limits[m].slack {
			msg := fmt.Sprintf("%s grew from %.0f to %.0f", name, early, late)
			if enforce {
				r.failures = append(r.failures, msg)
			} else {
				r.notes = append(r.notes, msg+" (soak too short to judge)")
			}
		}
	}
}

func (r *soakResult) growthStrings() []string {
	var out []string
	for i, g := range r.growth {
		out = append(out, fmt.Sprintf("%s ×%.2f", soakMetrics[i], g))
	}
	return out
}

func (r *soakResult) csvBytes() []byte {
	var b strings.Builder
	b.WriteString("seconds," + strings.Join(soakMetrics, ",") + "\n")
	for _, s := range r.samples {
		b.WriteString(strconv.FormatFloat(s.at.Seconds(), 'f', 1, 64))
		for _, v := range s.values {
			b.WriteString("," + strconv.FormatFloat(v, 'f', 0, 64))
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// svgBytes plots each metric in a panel of its own, from zero to its maximum.
func (r *soakResult) svgBytes() []byte {
	const w, h, pad = 640, 160, 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h*len(soakMetrics))
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	var span float64
	if n := len(r.samples); n > 0 {
		span = r.samples[n-1].at.Seconds()
	}
	for m, name := range soakMetrics {
		top := m * h
		peak := 0.0
		for _, s := range r.samples {
			peak = max(peak, s.values[m])
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (max %.0f) over %.0f s</text>`+"\n", pad, top+15, name, peak, span)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`+"\n", pad, top+20, w-2*pad, h-40)
		if peak == 0 || span == 0 {
			continue
		}
		var pts []string
		for _, s := range r.samples {
			x := float64(pad) + s.at.Seconds()/span*float64(w-2*pad)
			y := float64(top+h-20) - s.values[m]/peak*float64(h-40)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
