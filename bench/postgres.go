// Package bench compares PostgreSQL access through Gatehouse with a direct connection and
// with PgBouncer, measured side by side in one run on this machine (pgbench -S).
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Options choose what to measure.
type Options struct {
	Duration  time.Duration
	Modes     []string // simple, extended, prepared
	Clients   []int
	Scale     int
	PgBouncer bool
	// Strict also measures Gatehouse in strict audit mode.
	Strict bool
	// IdleSessions, when > 0, also opens that many idle sessions through Gatehouse and
	// reports the proxy's memory per session.
	IdleSessions int
	// HeapProfile, when set, is where a heap profile of this process is written after the
	// pgbench runs (with IdleSessions, while Gatehouse holds them); Gatehouse, with its
	// embedded NATS server, runs in this process.
	HeapProfile string
	// Floor also measures a bare relay written in Go (a goroutine pair per session copying
	// bytes, no parsing): the least any Go proxy built that way costs.
	Floor bool
	// Linger is Gatehouse's audit.linger (0: the default).
	Linger time.Duration
	// MemorySpool also measures a second Gatehouse whose spool is in memory only
	// (audit.spool_dir: none): the cost of the crash-safe journal is the difference.
	MemorySpool bool
	Log         *slog.Logger
	Out         io.Writer
}

// Result is one pgbench run.
type Result struct {
	Target  string  `json:"target"`
	Mode    string  `json:"mode"`
	Clients int     `json:"clients"`
	TPS     float64 `json:"tps"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	// ProxyCPUus is the CPU time the proxy process used per transaction (PgBouncer's; for
	// Gatehouse this process's, which holds the embedded NATS server too); 0 for direct.
	ProxyCPUus float64 `json:"proxy_cpu_us_per_txn,omitempty"`
	// AuditBytes and AuditMsgs are what GH_AUDIT grew by per transaction (Gatehouse only).
	AuditBytes float64 `json:"audit_bytes_per_txn,omitempty"`
	AuditMsgs  float64 `json:"audit_msgs_per_txn,omitempty"`
}

const (
	benchUser = "bench"
	benchPass = "bench-password"
	benchDB   = "bench"
)

// Postgres runs the comparison and prints the table.
func Postgres(ctx context.Context, o Options) ([]Result, error) {
	work, err := os.MkdirTemp("", "gh-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Out, "starting PostgreSQL ...")
	pg, err := localdb.StartPostgres(ctx, filepath.Join(work, "pg"), 0)
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	for _, stmt := range []string{fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", benchUser, benchPass), fmt.Sprintf("CREATE DATABASE %s OWNER %s", benchDB, benchUser)} {
		if err := pg.Exec(ctx, "postgres", stmt); err != nil {
			return nil, err
		}
	}
	if out, err := pgbench(ctx, pg.Port, benchUser, benchPass, "-i", "-q", "-s", strconv.Itoa(o.Scale), benchDB); err != nil {
		return nil, fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	type target struct {
		name       string // "name" or "name:database"
		port       int
		user, pass string
		cpu        func() (time.Duration, error) // the proxy's CPU time so far
		audit      func() (bytes, msgs uint64, err error)
	}
	targets := []target{{"direct", pg.Port, benchUser, benchPass, nil, nil}}
	maxClients := slices.Max(o.Clients) + 10
	if o.PgBouncer {
		fmt.Fprintln(o.Out, "starting PgBouncer ...")
		pb, err := localdb.StartPgBouncer(ctx, filepath.Join(work, "pgbouncer"), pg, benchDB, benchUser, benchPass, maxClients)
		if err != nil {
			return nil, err
		}
		defer pb.Stop()
		targets = append(targets, target{"pgbouncer", pb.Port, benchUser, benchPass, pb.CPUTime, nil})
	}

	if o.Floor {
		fl, err := startFloorRelay(pg.Addr())
		if err != nil {
			return nil, err
		}
		defer fl.Close()
		self := func() (time.Duration, error) { return localdb.ProcCPUTime(os.Getpid()) }
		targets = append(targets, target{"go-relay", fl.Addr().(*net.TCPAddr).Port, benchUser, benchPass, self, nil})
	}

	fmt.Fprintln(o.Out, "starting Gatehouse (embedded NATS, policy, proxy) ...")
	gw, err := startGateway(ctx, work, "gatehouse", pg, o.Linger, o.Log)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	self := func() (time.Duration, error) { return localdb.ProcCPUTime(os.Getpid()) }
	targets = append(targets, target{"gatehouse:bench", gw.port, "bench-svc", gw.token, self, gw.audit})
	if o.MemorySpool {
		fmt.Fprintln(o.Out, "starting a second Gatehouse with its spool in memory only ...")
		mem, err := startGateway(ctx, work, "gatehouse-memspool", pg, o.Linger, o.Log)
		if err != nil {
			return nil, err
		}
		defer mem.stop()
		targets = append(targets, target{"gh-memspool:bench", mem.port, "bench-svc", mem.token, self, mem.audit})
	}
	if o.Strict {
		targets = append(targets, target{"gatehouse-strict:bench-strict", gw.port, "bench-svc", gw.token, self, gw.audit})
	}

	var results []Result
	for _, mode := range o.Modes {
		for _, c := range o.Clients {
			for _, t := range targets {
				name, db := t.name, benchDB
				if n, d, ok := strings.Cut(t.name, ":"); ok {
					name, db = n, d
				}
				var cpu0 time.Duration
				if t.cpu != nil {
					if cpu0, err = t.cpu(); err != nil {
						return results, err
					}
				}
				var bytes0, msgs0 uint64
				if t.audit != nil {
					if bytes0, msgs0, err = t.audit(); err != nil {
						return results, err
					}
				}
				r, txns, err := run(ctx, work, t.port, t.user, t.pass, db, mode, c, o.Duration)
				if err != nil {
					return results, fmt.Errorf("%s %s c=%d: %w", name, mode, c, err)
				}
				if t.cpu != nil && txns > 0 {
					cpu1, err := t.cpu()
					if err != nil {
						return results, err
					}
					r.ProxyCPUus = float64((cpu1 - cpu0).Microseconds()) / float64(txns)
				}
				if t.audit != nil && txns > 0 {
					// Buffered events reach the stream within the linger time.
					time.Sleep(100 * time.Millisecond)
					bytes1, msgs1, err := t.audit()
					if err != nil {
						return results, err
					}
					r.AuditBytes = float64(bytes1-bytes0) / float64(txns)
					r.AuditMsgs = float64(msgs1-msgs0) / float64(txns)
				}
				r.Target = name
				results = append(results, r)
				fmt.Fprintf(o.Out, "  %-17s %-9s c=%-3d %9.0f tps  p50 %6.0f µs  p99 %6.0f µs  proxy CPU %5.1f µs/txn%s\n", name, mode, c, r.TPS, r.P50us, r.P99us, r.ProxyCPUus, auditVolume(r))
			}
		}
	}
	PrintTable(o.Out, results)
	if o.HeapProfile != "" && o.IdleSessions == 0 {
		if err := writeHeapProfile(o.HeapProfile); err != nil {
			return results, err
		}
	}
	if o.IdleSessions > 0 {
		if err := idleSessions(ctx, o, gw, pg.Port); err != nil {
			return results, fmt.Errorf("idle sessions: %w", err)
		}
	}
	return results, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

func pgbench(ctx context.Context, port int, user, pass string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "pgbench", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", user}, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pass, "PGSSLMODE=disable")
	return cmd.CombinedOutput()
}

// run runs pgbench once and returns its result and the number of transactions.
func run(ctx context.Context, work string, port int, user, pass, db, mode string, clients int, d time.Duration) (Result, int64, error) {
	logDir, err := os.MkdirTemp(work, "log-")
	if err != nil {
		return Result{}, 0, err
	}
	defer os.RemoveAll(logDir)
	threads := min(clients, runtime.NumCPU())
	out, err := pgbench(ctx, port, user, pass, "-S", "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
		"-T", strconv.Itoa(int(d.Seconds())), "-l", "--log-prefix="+filepath.Join(logDir, "tx"), db)
	if err != nil {
		return Result{}, 0, fmt.Errorf("%v\n%s", err, out)
	}
	r := Result{Mode: mode, Clients: clients}
	var txns int64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "tps = "); ok {
			r.TPS, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
		if v, ok := strings.CutPrefix(line, "number of transactions actually processed: "); ok {
			txns, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	lat, err := latencies(logDir)
	if err != nil {
		return r, txns, err
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50us = lat[len(lat)/2]
		r.P99us = lat[len(lat)*99/100]
	}
	return r, txns, nil
}

// latencies reads pgbench's per-transaction logs: "client tx latency_us script epoch us".
func latencies(dir string) ([]float64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx*"))
	if err != nil {
		return nil, err
	}
	var out []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 3 {
				if v, err := strconv.ParseFloat(fields[2], 64); err == nil {
					out = append(out, v)
				}
			}
		}
		fh.Close()
	}
	return out, nil
}

// PrintTable prints results with ratios to the direct connection of the same mode and
// client count.
func PrintTable(w io.Writer, results []Result) {
	direct := map[string]Result{}
	for _, r := range results {
		if r.Target == "direct" {
			direct[fmt.Sprint(r.Mode, r.Clients)] = r
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\tclients\tTPS\t× direct\tp50 µs\tp99 µs\tadded p50 µs\tproxy CPU µs/txn\t")
	for _, r := range results {
		d := direct[fmt.Sprint(r.Mode, r.Clients)]
		ratio, added := 0.0, 0.0
		if d.TPS > 0 {
			ratio, added = r.TPS/d.TPS, r.P50us-d.P50us
		}
		cpu := "-"
		if r.ProxyCPUus > 0 {
			cpu = fmt.Sprintf("%.1f", r.ProxyCPUus)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.2f\t%.0f\t%.0f\t%+.0f\t%s\t\n", r.Target, r.Mode, r.Clients, r.TPS, ratio, r.P50us, r.P99us, added, cpu)
	}
	tw.Flush()
}

// startFloorRelay listens on loopback and relays every connection to addr with a goroutine
// pair copying bytes: no parsing, no policy, no audit. It runs in this process, next to
// an idle Gatehouse (whose background work is part of what it is charged).
func startFloorRelay(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				b, err := net.Dial("tcp", addr)
				if err != nil {
					c.Close()
					return
				}
				go func() { _, _ = io.Copy(b, c); b.Close() }()
				_, _ = io.Copy(c, b)
				c.Close()
			}()
		}
	}()
	return ln, nil
}

// auditVolume describes what a run added to the audit stream, for Gatehouse's rows.
func auditVolume(r Result) string {
	if r.AuditMsgs == 0 {
		return ""
	}
	return fmt.Sprintf("  audit %4.0f B/txn, %.3f msgs/txn", r.AuditBytes, r.AuditMsgs)
}

type gateway struct {
	port  int
	token string
	audit func() (bytes, msgs uint64, err error) // GH_AUDIT's size so far
	stop  func()
}

// startGateway runs Gatehouse in this process: embedded NATS, the policy service, the dev
// issuer and the PostgreSQL proxy, with an allow-reads policy for the bench identity, a
// mask rule on a column pgbench does not read, and audit events published to JetStream
// (buffered for "bench", strict for "bench-strict").
func startGateway(ctx context.Context, work, name string, pg *localdb.Postgres, linger time.Duration, log *slog.Logger) (*gateway, error) {
	pw := filepath.Join(work, "bench-password")
	if err := os.WriteFile(pw, []byte(benchPass), 0o600); err != nil {
		return nil, err
	}
	spool := ""
	if name == "gatehouse-memspool" {
		spool = "audit: {spool_dir: none}"
	}
	yaml := fmt.Sprintf(`
data_dir: %[1]s/%[4]s
%[5]s
log: {level: warn}
server: {http_listen: "127.0.0.1:0"}
identity: {dev_issuer: true}
proxy: {postgres: {listen: "127.0.0.1:0"}}
resources:
  - {name: bench, type: postgres, audit: buffered, postgres: {address: "%[2]s", database: bench, user: bench, password_file: %[3]s, sslmode: disable}}
  - {name: bench-strict, type: postgres, audit: strict, postgres: {address: "%[2]s", database: bench, user: bench, password_file: %[3]s, sslmode: disable}}
policies:
  - name: bench
    resources: ["*"]
    rules:
      - {name: bench-reads, effect: allow, when: '"bench" in identity.groups && request.sql.kinds.all(k, k == "select")'}
      - {name: no-drop-database, effect: deny, when: '"drop_database" in request.sql.kinds', reason: never}
      # Masking is active on a column pgbench -S does not read: every statement is decided
      # "mask", and its results are checked column by column.
      - {name: mask-filler, effect: mask, when: "true", mask: {columns: [pgbench_accounts.filler], method: redact}}
`, work, pg.Addr(), pw, name, spool)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, err
	}
	if linger > 0 {
		cfg.Audit.Linger = linger
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a, tok, stop, err := startGatehouse(ctx, cfg, "proxy-postgres", log)
	if err != nil {
		return nil, err
	}
	_, portStr, _ := strings.Cut(a.ListenAddr("postgres"), ":")
	port, _ := strconv.Atoi(portStr)
	// Warm up: the first connection discovers the issuer.
	if c, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=bench user=bench-svc password=%s sslmode=disable", port, tok)); err == nil {
		c.Close(ctx)
	} else {
		stop()
		return nil, fmt.Errorf("connect through gatehouse: %w", err)
	}
	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		stop()
		return nil, fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		stop()
		return nil, err
	}
	audit := func() (uint64, uint64, error) {
		s, err := js.Stream(ctx, bus.StreamAudit)
		if err != nil {
			return 0, 0, fmt.Errorf("audit stream: %w", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("audit stream: %w", err)
		}
		return info.State.Bytes, info.State.Msgs, nil
	}
	return &gateway{port: port, token: tok, audit: audit, stop: func() { nc.Close(); stop() }}, nil
}

// idleSessions opens n idle sessions through Gatehouse (which runs in this process) and
// reports the heap the gateway holds per session. The pgconn clients live in this process
// too, so the same n clients are first measured connected to PostgreSQL directly, and
// their share is subtracted.
func idleSessions(ctx context.Context, o Options, gw *gateway, pgPort int) error {
	direct := fmt.Sprintf("host=127.0.0.1 port=%d dbname=bench user=%s password=%s sslmode=disable", pgPort, benchUser, benchPass)
	client, _, err := openIdle(ctx, direct, o.IdleSessions, nil)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	via := fmt.Sprintf("host=127.0.0.1 port=%d dbname=bench user=bench-svc password=%s sslmode=disable", gw.port, gw.token)
	var held func() error
	if o.HeapProfile != "" {
		held = func() error { return writeHeapProfile(o.HeapProfile) }
	}
	total, took, err := openIdle(ctx, via, o.IdleSessions, held)
	if err != nil {
		return fmt.Errorf("through gatehouse: %w", err)
	}
	fmt.Fprintf(o.Out, "\n%d idle sessions through Gatehouse opened in %s without error: %.1f KiB of heap per session "+
		"(%.1f KiB with the client, %.1f KiB for the same client connected directly)\n",
		o.IdleSessions, took.Round(time.Millisecond), (total-client)/1024, total/1024, client/1024)
	return nil
}

// openIdle opens n connections, runs one statement on each, and returns the heap in use per
// connection while they are all open and idle; held, when set, runs while they are.
func openIdle(ctx context.Context, connString string, n int, held func() error) (float64, time.Duration, error) {
	heap := func() uint64 {
		// Twice: buffers parked in sync.Pools (batches already acknowledged) survive one
		// collection; they belong to no session.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := pgconn.Connect(ctx, connString)
		if err != nil {
			return 0, 0, fmt.Errorf("session %d: %w", i+1, err)
		}
		conns = append(conns, c)
		if _, err := c.Exec(ctx, "select 1").ReadAll(); err != nil {
			return 0, 0, fmt.Errorf("session %d: %w", i+1, err)
		}
	}
	took := time.Since(start)
	perConn := (float64(heap()) - float64(before)) / float64(n)
	if held != nil {
		if err := held(); err != nil {
			return 0, 0, err
		}
	}
	return perConn, took, nil
}

// startGatehouse runs Gatehouse with cfg — NATS embedded, the policy service, the dev
// issuer and one proxy target — until it is ready, and mints a token of the bench's
// service; stop ends it.
func startGatehouse(ctx context.Context, cfg *config.Config, target string, log *slog.Logger) (*app.App, string, func(), error) {
	a := app.New(cfg, log)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx, []string{"nats", "policy", "dev-issuer", target}) }()
	for !a.Ready() {
		select {
		case err := <-done:
			cancel()
			return nil, "", nil, fmt.Errorf("gatehouse: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop := func() { cancel(); <-done }
	d, err := identity.NewDevIssuer(a.DevIssuerURL(), cfg.DataDir, log)
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	tok, err := d.Mint(identity.TokenRequest{Subject: "bench-svc", Groups: []string{"bench"}, TTL: 12 * time.Hour})
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	return a, tok, stop, nil
}
