package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localnginx"
)

// HTTPOptions choose what gatehouse bench http measures.
type HTTPOptions struct {
	// Duration is the length of each wrk run.
	Duration time.Duration
	// Connections are wrk's connection counts (each measured against every target).
	Connections []int
	// Rounds is how many times every target is measured at every connection count; the
	// targets alternate within a round (their order rotating from round to round), and
	// medians across rounds are reported.
	Rounds int
	Log    *slog.Logger
	Out    io.Writer
}

// HTTPResult is one target at one connection count: medians across rounds.
type HTTPResult struct {
	Target      string    `json:"target"`
	Connections int       `json:"connections"`
	RPS         float64   `json:"requests_per_second"`
	P50us       float64   `json:"p50_us"`
	P99us       float64   `json:"p99_us"`
	Runs        []HTTPRun `json:"runs"`
}

// HTTPRun is one wrk run.
type HTTPRun struct {
	RPS   float64 `json:"requests_per_second"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
}

// benchDocument is what the upstream answers: about 1 KB of JSON, with a card number per
// customer for the masked resource to mask by path.
var benchDocument = func() []byte {
	type customer struct {
		ID         int    `json:"id"`
		Name       string `json:"name"`
		Email      string `json:"email"`
		CardNumber string `json:"card_number"`
		Country    string `json:"country"`
		Balance    string `json:"balance"`
	}
	var doc struct {
		Customers []customer `json:"customers"`
		Total     int        `json:"total"`
		Next      string     `json:"next"`
	}
	for i := 1; i <= 7; i++ {
		doc.Customers = append(doc.Customers, customer{ID: i, Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("customer%d@example.com", i),
			CardNumber: "4111 1111 1111 1111", Country: "DE", Balance: fmt.Sprintf("%d.50", 100*i)})
	}
	doc.Total, doc.Next = len(doc.Customers), "/customers?page=2"
	b, _ := json.Marshal(doc)
	return b
}()

const benchUpstreamSecret = "bench-upstream-secret"

type httpTarget struct {
	name string
	url  string
}

// HTTP runs the comparison: a Go upstream answering benchDocument, measured directly,
// through nginx as a plain reverse proxy, and through Gatehouse (a resource allowed by
// policy, and one whose responses a rule masks), with wrk.
func HTTP(ctx context.Context, o HTTPOptions) ([]HTTPResult, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, errors.New("wrk is not installed: deploy/install-deps.sh bench (apt-get install wrk)")
	}
	if o.Rounds < 1 || len(o.Connections) == 0 {
		return nil, errors.New("bench http: at least one round and one connection count")
	}
	work, err := os.MkdirTemp("", "gh-bench-http-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	up, err := startBenchUpstream()
	if err != nil {
		return nil, err
	}
	defer up.Close()
	upURL := "http://" + up.Addr().String()

	fmt.Fprintln(o.Out, "starting nginx (reverse proxy, kept-alive upstream connections) ...")
	ng, err := localnginx.Start(ctx, filepath.Join(work, "nginx"), localnginx.Config{ProxyTo: upURL, NoAccessLog: false})
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	defer ng.Stop()

	fmt.Fprintln(o.Out, "starting Gatehouse (embedded NATS, policy, HTTP proxy) ...")
	gw, err := startHTTPGateway(ctx, work, upURL, o.Log)
	if err != nil {
		return nil, err
	}
	defer gw.stop()

	targets := []httpTarget{
		{"direct", upURL + "/customers"},
		{"nginx", ng.URL + "/customers"},
		{"gatehouse", gw.url + "/api/customers"},
		{"gatehouse-masked", gw.url + "/api-masked/customers"},
	}
	script := filepath.Join(work, "auth.lua")
	// Every target gets the same request, token included (the upstream ignores it; the
	// gateway verifies it and sends its own credential instead).
	if err := os.WriteFile(script, []byte(fmt.Sprintf("wrk.headers[\"Authorization\"] = \"Bearer %s\"\n", gw.token)), 0o600); err != nil {
		return nil, err
	}
	for _, t := range targets {
		if err := checkTarget(ctx, t, gw.token); err != nil {
			return nil, err
		}
	}

	type key struct {
		target string
		conns  int
	}
	runs := map[key][]HTTPRun{}
	for round := 0; round < o.Rounds; round++ {
		for _, c := range o.Connections {
			for i := range targets {
				t := targets[(i+round)%len(targets)]
				r, err := runWrk(ctx, t.url, script, c, o.Duration)
				if err != nil {
					return nil, fmt.Errorf("%s c=%d: %w", t.name, c, err)
				}
				runs[key{t.name, c}] = append(runs[key{t.name, c}], r)
				fmt.Fprintf(o.Out, "  round %d  %-17s c=%-3d %9.0f req/s  p50 %7.0f µs  p99 %7.0f µs\n", round+1, t.name, c, r.RPS, r.P50us, r.P99us)
			}
		}
	}
	var results []HTTPResult
	for _, c := range o.Connections {
		for _, t := range targets {
			rs := runs[key{t.name, c}]
			res := HTTPResult{Target: t.name, Connections: c, Runs: rs}
			res.RPS = medianOf(rs, func(r HTTPRun) float64 { return r.RPS })
			res.P50us = medianOf(rs, func(r HTTPRun) float64 { return r.P50us })
			res.P99us = medianOf(rs, func(r HTTPRun) float64 { return r.P99us })
			results = append(results, res)
		}
	}
	fmt.Fprintf(o.Out, "\nmedians of %d rounds, %s per run, on %d CPUs (wrk, the upstream, nginx and Gatehouse share them):\n", o.Rounds, o.Duration, runtime.NumCPU())
	PrintHTTPTable(o.Out, results)
	return results, nil
}

// PrintHTTPTable prints results with what each target adds to the direct connection at
// the same connection count, and Gatehouse's throughput against nginx's.
func PrintHTTPTable(w io.Writer, results []HTTPResult) {
	by := map[string]HTTPResult{}
	for _, r := range results {
		by[fmt.Sprint(r.Target, r.Connections)] = r
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconns\treq/s\t× direct\t× nginx\tp50 µs\tp99 µs\tadded p50 µs\tadded p99 µs\t")
	for _, r := range results {
		d, n := by[fmt.Sprint("direct", r.Connections)], by[fmt.Sprint("nginx", r.Connections)]
		xd, xn := "-", "-"
		if d.RPS > 0 && r.Target != "direct" {
			xd = fmt.Sprintf("%.2f", r.RPS/d.RPS)
		}
		if n.RPS > 0 && strings.HasPrefix(r.Target, "gatehouse") {
			xn = fmt.Sprintf("%.2f", r.RPS/n.RPS)
		}
		addP50, addP99 := "-", "-"
		if r.Target != "direct" && d.RPS > 0 {
			addP50, addP99 = fmt.Sprintf("%+.0f", r.P50us-d.P50us), fmt.Sprintf("%+.0f", r.P99us-d.P99us)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t\n", r.Target, r.Connections, r.RPS, xd, xn, r.P50us, r.P99us, addP50, addP99)
	}
	tw.Flush()
}

func medianOf(rs []HTTPRun, f func(HTTPRun) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// startBenchUpstream serves benchDocument on loopback, in this process.
func startBenchUpstream() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	length := strconv.Itoa(len(benchDocument))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(benchDocument)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

// checkTarget makes sure a target answers 200 with the document (masked through the
// masked resource) before it is measured: a benchmark of refusals measures nothing.
func checkTarget(ctx context.Context, t httpTarget, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", t.name, resp.StatusCode, b)
	}
	masked := !strings.Contains(string(b), "4111 1111 1111 1111")
	if masked != (t.name == "gatehouse-masked") {
		return fmt.Errorf("%s: card numbers masked: %v, want %v: %s", t.name, masked, !masked, b)
	}
	return nil
}

// runWrk runs wrk once against url and reads its requests per second and latency
// distribution (--latency).
func runWrk(ctx context.Context, url, script string, conns int, d time.Duration) (HTTPRun, error) {
	threads := min(conns, runtime.NumCPU())
	secs := max(1, int(d.Round(time.Second).Seconds()))
	cmd := exec.CommandContext(ctx, "wrk", "--latency", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "10s", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return HTTPRun{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk --latency output.
func parseWrk(out string) (HTTPRun, error) {
	var r HTTPRun
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.RPS, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.P50us = wrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.P99us = wrkDuration(f[1])
		case strings.Contains(line, "Non-2xx or 3xx responses"):
			return r, fmt.Errorf("wrk saw refusals or errors: %s", strings.TrimSpace(line))
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"):
			return r, fmt.Errorf("wrk: %s", strings.TrimSpace(line))
		}
	}
	if r.RPS == 0 || r.P50us == 0 {
		return r, fmt.Errorf("wrk's output has no rate or latency distribution:\n%s", out)
	}
	return r, nil
}

// wrkDuration reads wrk's durations (123.45us, 1.23ms, 2.00s) in microseconds.
func wrkDuration(s string) float64 {
	for _, u := range []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"m", 60e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return f * u.us
		}
	}
	return 0
}

type httpGateway struct {
	url   string
	token string
	stop  func()
}

// startHTTPGateway runs Gatehouse in this process: embedded NATS, the policy service, the
// dev issuer and the HTTP proxy (plain HTTP on loopback, as nginx is measured), with two
// resources in front of the upstream — bench-api, whose GETs the policy allows, and
// bench-api-masked, whose responses a rule masks by path ($.customers[*].card_number) —
// and audit events published to JetStream (buffered).
func startHTTPGateway(ctx context.Context, work, upURL string, log *slog.Logger) (*httpGateway, error) {
	yaml := fmt.Sprintf(`
data_dir: %[1]s/gatehouse
log: {level: warn}
server: {http_listen: "127.0.0.1:0"}
identity: {dev_issuer: true}
proxy: {http: {listen: "127.0.0.1:0", insecure_plaintext: true}}
resources:
  - {name: bench-api, type: http, audit: buffered, http: {url: "%[2]s", path_prefix: /api, bearer: %[3]s}}
  - {name: bench-api-masked, type: http, audit: buffered, http: {url: "%[2]s", path_prefix: /api-masked, bearer: %[3]s}}
policies:
  - name: bench-reads
    resources: ["*"]
    rules:
      - {name: reads, effect: allow, when: '"bench" in identity.groups && request.http.method == "GET"'}
  - name: bench-masked
    resources: [bench-api-masked]
    rules:
      - {name: mask-cards, effect: mask, when: "true", mask: {fields: ["$.customers[*].card_number"], method: redact}}
`, work, upURL, benchUpstreamSecret)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a, tok, stop, err := startGatehouse(ctx, cfg, "proxy-http", log)
	if err != nil {
		return nil, err
	}
	return &httpGateway{url: "http://" + a.ListenAddr("http"), token: tok, stop: stop}, nil
}
