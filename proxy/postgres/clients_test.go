package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNodePostgres runs node-postgres (pg, with pg-cursor, pg-query-stream and
// pg-copy-streams; versions pinned in testdata/nodepg/package-lock.json) against PostgreSQL
// directly and through the proxy, and requires the same answer to every check: simple and
// extended queries, named statements, binary results, errors and recovery, pg's pipeline
// mode, cursors, streams, COPY both ways, notices, LISTEN/NOTIFY, cancel, startup options
// and timeouts, pg_terminate_backend, pools and quick disconnects.
func TestNodePostgres(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed (deploy/install-deps.sh installs nodejs and npm)", tool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "check.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", "nodepg", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	npm := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	npm.Dir = dir
	out, err := npm.CombinedOutput()
	require.NoError(t, err, "npm ci (the npm registry must be reachable): %s", out)

	env := startProxy(t, 1<<20)
	run := func(cfg map[string]any) map[string]string {
		js, err := json.Marshal(cfg)
		require.NoError(t, err)
		return checkLines(t, ctx, dir, "node", "check.js", string(js))
	}
	direct := run(map[string]any{"host": "127.0.0.1", "port": env.pg.Port, "database": "app", "user": "app", "password": "app-secret"})
	proxied := run(map[string]any{"host": env.host, "port": env.port, "database": "app", "user": "app-svc", "password": env.token, "sslcheck": true})
	require.GreaterOrEqual(t, len(direct), 40, "every check printed its lines: %v", direct)
	for _, name := range []string{"pipeline", "queued", "cursor", "stream", "copy-in", "copy-out", "copy-in-error", "listen", "notices", "err-multi", "terminate"} {
		require.Contains(t, direct, name)
	}
	require.Equal(t, `{"code":"57014","early":true}`, direct["cancel"], "the check's cancel works against PostgreSQL")
	require.Equal(t, `"skipped"`, direct["ssl"])
	require.Equal(t, `[{"one":1}]`, proxied["ssl"], "TLS through the proxy")
	delete(direct, "ssl")
	delete(proxied, "ssl")
	sameAnswers(t, direct, proxied)
}

// TestPsycopg runs psycopg 3 (Debian's python3-psycopg, over libpq) against PostgreSQL
// directly and through the proxy, and requires the same answer to every check: binary
// results, statements psycopg prepares by itself, libpq pipeline mode with an error inside,
// executemany, COPY in text and binary both ways, a server-side cursor, notices, NOTIFY,
// cancel, and the ParameterStatus values.
func TestPsycopg(t *testing.T) {
	// Debian's interpreter, where python3-psycopg is installed (another python3 may come
	// first on PATH).
	python := "/usr/bin/python3"
	out, err := exec.Command(python, "-c", "import psycopg").CombinedOutput()
	require.NoError(t, err, "psycopg 3 is needed (deploy/install-deps.sh installs python3-psycopg): %s", out)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := startProxy(t, 1<<20)
	direct := checkLines(t, ctx, "testdata/psycopg", python, "check.py", env.pg.ConnString("app", "app-secret", "app"))
	proxied := checkLines(t, ctx, "testdata/psycopg", python, "check.py", env.conn("sslmode=disable"))
	require.Len(t, direct, 23, "every check printed its line: %v", direct)
	for _, name := range []string{"auto-prepared", "pipeline", "pipeline-error", "copy-in", "copy-out-binary", "named-cursor", "notify"} {
		require.Contains(t, direct, name)
	}
	require.Contains(t, direct["cancel"], `"57014"`, "the check's cancel works against PostgreSQL")
	sameAnswers(t, direct, proxied)
}

// checkLines runs a client check script and returns its output lines ("name value") by name.
func checkLines(t *testing.T, ctx context.Context, dir string, command ...string) map[string]string {
	t.Helper()
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%v: %s", command[:2], stderr.String())
	lines := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), " ")
		require.NotContains(t, lines, name, "one line per check")
		require.False(t, strings.HasPrefix(name, "FAILED"), "check %s threw: %s", name, value)
		lines[name] = value
	}
	return lines
}

// sameAnswers requires the proxied run to have answered every check as PostgreSQL did.
func sameAnswers(t *testing.T, direct, proxied map[string]string) {
	t.Helper()
	for name, want := range direct {
		require.Equal(t, want, proxied[name], "check %s: through the proxy (actual) vs directly (expected)", name)
	}
	require.Equal(t, len(direct), len(proxied), "the same checks printed the same lines: %v", proxied)
}
