// Package integration runs Gatehouse end to end against real PostgreSQL, ClickHouse and NATS
// with real clients (psql, pgx, curl), in one process (target=all) and split into separate
// processes (`gatehouse run --target=...`).
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/dev/localdb/pgtest"
)

// binary is bin/gatehouse built once for the tests that run separate processes.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gh-integration-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gatehouse")
	// Commands without a token would use the sign-in of whoever runs the tests.
	os.Setenv("GATEHOUSE_CONFIG_DIR", filepath.Join(dir, "config"))
	cmd := exec.Command("go", "build", "-o", binary, "github.com/gatehouse/gatehouse")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gatehouse: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(&tlogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tlogWriter struct{ t *testing.T }

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// demoPostgres starts PostgreSQL seeded with the demo database, and returns it with the
// file that holds the gateway's backend password.
func demoPostgres(t *testing.T) (*localdb.Postgres, string) {
	pg := pgtest.Start(t)
	pwFile := filepath.Join(t.TempDir(), "demo-pg-password")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, cli.SeedDemo(ctx, pg, "gatehouse_demo", "demo", pwFile))
	return pg, pwFile
}

// gateway is what a test needs to reach a running Gatehouse.
type gateway struct {
	pgHost, pgPort string // PostgreSQL proxy
	api            string // base URL of the query API
	ingestAPI      string // base URL of the ingest process (retention)
	policyAPI      string // base URL of the policy process (policy and resource API)
	approvalsAPI   string // base URL of the approvals process
	issuer         string // base URL of the HTTP server with the dev issuer
	chAddr, chDB   string
	backendPW      string
	pg             *localdb.Postgres
}

// token mints a development token through the CLI, as a user would.
func (g *gateway) token(t *testing.T, sub string, groups ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Main([]string{"token", "--dev", "--sub", sub, "--groups", strings.Join(groups, ","), "--url", g.issuer}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	return strings.TrimSpace(out.String())
}

// psql runs the real psql client through the proxy.
func (g *gateway) psql(t *testing.T, token, user, sql string) (string, string, error) {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
		fmt.Sprintf("host=%s port=%s dbname=demo user=%s sslmode=disable", g.pgHost, g.pgPort, user), "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// apiGet calls the query API with curl, the way an operator would.
func (g *gateway) apiGet(t *testing.T, token, path string) (int, []byte) {
	t.Helper()
	args := []string{"-sS", "-o", "-", "-w", "\n%{http_code}", g.api + path}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	out, err := exec.Command("curl", args...).Output()
	require.NoError(t, err)
	i := bytes.LastIndexByte(out, '\n')
	var code int
	_, err = fmt.Sscanf(string(out[i+1:]), "%d", &code)
	require.NoError(t, err)
	return code, out[:i]
}

// cliJSON runs a CLI command against the API and decodes its --json output.
func (g *gateway) cliJSON(t *testing.T, token string, out any, args ...string) error {
	return g.cliJSONAt(t, g.api, token, out, args...)
}

// cliJSONAt is cliJSON against the HTTP server at base.
func (g *gateway) cliJSONAt(t *testing.T, base, token string, out any, args ...string) error {
	var stdout, stderr bytes.Buffer
	args = append(args, "--json", "--url", base, "--token", token)
	if code := cli.Main(args, &stdout, &stderr); code != 0 {
		return fmt.Errorf("gatehouse %s: exit %d: %s", strings.Join(args[:2], " "), code, stderr.String())
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	require.Eventually(t, func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 90*time.Second, 100*time.Millisecond, "%s/readyz never answered 200", base)
}

// process is a `gatehouse run` child process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

func startProcess(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	return startCommand(t, env, binary, args...)
}

// startCommand is startProcess for any command (the binary under another, as ip netns exec).
func startCommand(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &process{cmd: cmd, done: make(chan struct{}), log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s %s output:\n%s", filepath.Base(name), strings.Join(args, " "), p.log.String())
		}
	})
	return p
}

// stop ends the process as an operator would (SIGINT), killing it after 20s.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process at once, as a crash would.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// syncBuffer collects a child's output from two pipes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// runApp runs targets of cfg in this process until the test ends, and returns it ready.
// At the end it must stop within 30 s (else the test fails with every goroutine's stack).
func runApp(t *testing.T, cfg *config.Config, targets ...string) *app.App {
	t.Helper()
	a := app.New(cfg, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, targets) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			var buf strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Errorf("gatehouse did not stop within 30s:\n%s", buf.String())
		}
	})
	require.Eventually(t, a.Ready, 60*time.Second, 50*time.Millisecond)
	waitReady(t, "http://"+a.HTTPAddr())
	return a
}
