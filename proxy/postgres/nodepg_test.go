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
		cmd := exec.CommandContext(ctx, "node", "check.js", string(js))
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "node check.js: %s", stderr.String())
		lines := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			name, value, _ := strings.Cut(sc.Text(), " ")
			require.NotContains(t, lines, name, "one line per check")
			lines[name] = value
		}
		return lines
	}
	direct := run(map[string]any{"host": "127.0.0.1", "port": env.pg.Port, "database": "app", "user": "app", "password": "app-secret"})
	proxied := run(map[string]any{"host": env.host, "port": env.port, "database": "app", "user": "app-svc", "password": env.token, "sslcheck": true})

	for name, v := range direct {
		require.False(t, strings.HasPrefix(name, "FAILED"), "directly, check %s threw: %s", name, v)
	}
	require.GreaterOrEqual(t, len(direct), 40, "every check printed its lines: %v", direct)
	for _, name := range []string{"pipeline", "queued", "cursor", "stream", "copy-in", "copy-out", "copy-in-error", "listen", "notices", "err-multi", "terminate"} {
		require.Contains(t, direct, name)
	}
	require.Equal(t, `{"code":"57014","early":true}`, direct["cancel"], "the check's cancel works against PostgreSQL")
	require.Equal(t, `"skipped"`, direct["ssl"])
	require.Equal(t, `[{"one":1}]`, proxied["ssl"], "TLS through the proxy")
	delete(direct, "ssl")
	delete(proxied, "ssl")
	for name, want := range direct {
		require.Equal(t, want, proxied[name], "check %s: through the proxy (actual) vs directly (expected)", name)
	}
	require.Equal(t, len(direct), len(proxied), "the same checks printed the same lines: %v", proxied)
}
