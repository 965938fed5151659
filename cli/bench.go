package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/bench"
	"github.com/gatehouse/gatehouse/services/config"
)

func benchCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ingest" {
		return benchIngest(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "audit" {
		return benchAudit(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "http" {
		return benchHTTP(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "postgres" {
		return usageError{"bench needs a target: postgres, http, ingest or audit"}
	}
	fs := newFlags("bench postgres", stdout)
	duration := fs.Duration("duration", 10e9, "length of each pgbench run")
	modes := fs.String("modes", "simple,extended,prepared", "pgbench query modes")
	clients := fs.String("clients", "1,8,32", "client counts")
	scale := fs.Int("scale", 10, "pgbench scale factor")
	noBouncer := fs.Bool("no-pgbouncer", false, "skip PgBouncer")
	noStrict := fs.Bool("no-strict", false, "skip Gatehouse in strict audit mode")
	memSpool := fs.Bool("memory-spool", false, "also measure a second Gatehouse whose audit spool is in memory only (audit.spool_dir: none): the crash-safe journal's cost")
	floor := fs.Bool("floor", false, "also measure a bare Go relay (goroutine pair per session, no parsing, no audit): the floor for a Go proxy")
	idle := fs.Int("idle-sessions", 0, "also hold this many idle sessions through Gatehouse and report memory per session")
	asJSON := fs.Bool("json", false, "print the results as JSON after the table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (Gatehouse runs in it) to FILE")
	heapProfile := fs.String("memprofile", "", "write a heap profile of this process to FILE after the pgbench runs (with --idle-sessions, while the idle sessions are held)")
	traceFile := fs.String("trace", "", "write an execution trace of this process to FILE (large: narrow the run with --modes, --clients and --duration); go tool trace -pprof=sched FILE shows where goroutines waited to run")
	linger := fs.Duration("linger", 0, "Gatehouse's audit.linger for the run (default: the configuration's default)")
	if err := parseNoArgs(fs, args[1:]); err != nil {
		return err
	}
	var cs []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usageError{fmt.Sprintf("--clients: %q is not a positive number", s)}
		}
		cs = append(cs, n)
	}
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	stopTrace, err := startTrace(*traceFile)
	if err != nil {
		return err
	}
	defer stopTrace()
	ctx, cancel := signalContext()
	defer cancel()
	res, err := bench.Postgres(ctx, bench.Options{Duration: *duration, Modes: strings.Split(*modes, ","), Clients: cs, Scale: *scale,
		PgBouncer: !*noBouncer, Strict: !*noStrict, Floor: *floor, IdleSessions: *idle, HeapProfile: *heapProfile, Linger: *linger, MemorySpool: *memSpool, Log: NewLogger(config.Log{Level: "warn"}, stderr), Out: stdout})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return nil
}

func benchHTTP(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench http", stdout)
	duration := fs.Duration("duration", 10e9, "length of each wrk run")
	conns := fs.String("connections", "1,64", "wrk connection counts (comma-separated); each is measured against every target")
	rounds := fs.Int("rounds", 3, "rounds: every target is measured once per round and connection count, targets alternating; medians across rounds are reported")
	asJSON := fs.Bool("json", false, "print the results (and every run) as JSON after the table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (Gatehouse and the Go upstream run in it) to FILE")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var cs []int
	for _, s := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usageError{fmt.Sprintf("--connections: %q is not a positive number", s)}
		}
		cs = append(cs, n)
	}
	if *rounds < 1 || *duration < 1e9 {
		return usageError{"--rounds must be positive and --duration at least 1s"}
	}
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := signalContext()
	defer cancel()
	res, err := bench.HTTP(ctx, bench.HTTPOptions{Duration: *duration, Connections: cs, Rounds: *rounds,
		Log: NewLogger(config.Log{Level: "warn"}, stderr), Out: stdout})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return nil
}

func benchIngest(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench ingest", stdout)
	events := fs.Int("events", 1000000, "events to ingest")
	perMsg := fs.Int("per-message", 100, "events per JetStream message (a session's lingering batch)")
	batch := fs.Int("batch", 500, "ingest batch size (JetStream messages per ClickHouse insert)")
	asJSON := fs.Bool("json", false, "print the result as JSON too")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (ingest runs in it) to FILE")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *events < 1 || *perMsg < 1 || *batch < 1 {
		return usageError{"--events, --per-message and --batch must be positive"}
	}
	stop, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	res, err := bench.Ingest(context.Background(), bench.IngestOptions{Events: *events, PerMsg: *perMsg, BatchSize: *batch,
		Log: NewLogger(config.Log{Level: "warn"}, stderr), Out: stdout})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return nil
}

// startCPUProfile starts profiling this process into path ("" = no profile).
func startCPUProfile(path string) (stop func(), err error) {
	return startRecording(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startTrace starts an execution trace of this process into path ("" = no trace).
func startTrace(path string) (stop func(), err error) {
	return startRecording(path, trace.Start, trace.Stop)
}

// startRecording starts a recording of this process (a CPU profile, a trace) into path.
func startRecording(path string, start func(io.Writer) error, end func()) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { end(); f.Close() }, nil
}

func benchAudit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench audit", stdout)
	events := fs.Int("events", 10_000_000, "events generated in ClickHouse")
	replay := fs.Int("replay-events", 100_000, "events of the one long session whose replay is timed")
	runs := fs.Int("runs", 3, "runs per query (medians are reported)")
	asJSON := fs.Bool("json", false, "print the result as JSON too")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *events < 40 || *replay < 1 || *runs < 1 {
		return usageError{"--events must be at least 40, --replay-events and --runs positive"}
	}
	ctx, cancel := signalContext()
	defer cancel()
	res, err := bench.Audit(ctx, bench.AuditOptions{Events: *events, ReplayEvents: *replay, Runs: *runs,
		Log: NewLogger(config.Log{Level: "warn"}, stderr), Out: stdout})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return nil
}
