package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/config"
)

// componentTargets must each run in a service of docker-compose.yml.
var componentTargets = []string{"dev-issuer", "policy", "approvals", "notifier", "proxy-postgres", "ingest", "query"}

// sealingTargets load audit.signing_key_file: proxies seal sessions, ingest's sweeper seals
// the sessions of lost gateways, query checks seals.
var sealingTargets = []string{"proxy-postgres", "proxy-ssh", "proxy-http", "ingest", "query", "all"}

// TestComposeFile checks what can be checked without a Docker engine or servers:
// docker-compose.yml parses, every Gatehouse service runs real targets from deploy/Dockerfile,
// every component target has a service, every config it mounts is valid with the service's
// environment, the services that seal sessions share a signing key made before they start,
// every published port reaches a listener the service opens on every interface, the APIs
// the docs promise are on published ports, and .dockerignore keeps local state out of the
// build context. TestComposeRuns runs the file.
func TestComposeFile(t *testing.T) {
	compose := loadCompose(t)
	for _, infra := range []string{"nats", "clickhouse", "postgres"} {
		require.Contains(t, compose.Services, infra)
	}
	var targets []string
	for _, line := range app.Targets() {
		targets = append(targets, strings.Fields(line)[0])
	}
	seen := map[string]bool{}
	hostPorts := map[string]string{}
	apis := map[string]bool{} // targets whose HTTP API is published
	for name, svc := range compose.Services {
		for dep := range svc.DependsOn {
			require.Contains(t, compose.Services, dep, "service %s depends on a service that does not exist", name)
		}
		for _, m := range svc.mounts(t) {
			if m.named {
				require.Contains(t, compose.Volumes, m.source, "service %s mounts volume %s, which volumes: does not declare", name, m.source)
			} else {
				_, err := os.Stat(repoPath(t, m.source))
				require.NoError(t, err, "service %s mounts %s", name, m.source)
			}
		}
		for _, p := range svc.Ports {
			pp := parsePort(t, p)
			require.Empty(t, hostPorts[pp.hostPort], "host port %s is published by %s and %s", pp.hostPort, hostPorts[pp.hostPort], name)
			hostPorts[pp.hostPort] = name
		}
		if svc.Build == nil {
			continue
		}
		require.Equal(t, "deploy/Dockerfile", svc.Build.Dockerfile, name)
		require.FileExists(t, filepath.Join("..", svc.Build.Context, svc.Build.Dockerfile), name)
		if len(svc.Entrypoint) > 0 {
			continue // a one-shot helper (keys), run by TestComposeRuns
		}
		require.GreaterOrEqual(t, len(svc.Command), 2, name)
		require.Equal(t, "run", svc.Command[0], name)
		svcTargets := svc.targets()
		for _, tg := range svcTargets {
			require.True(t, slices.Contains(targets, tg), "service %s runs unknown target %q", name, tg)
			seen[tg] = true
		}
		cfg := composeConfig(t, name, svc)
		require.NoError(t, cfg.Validate(), name)

		// A published port must reach a listener that binds every interface of the
		// container (a loopback listener is out of reach of the published port).
		ls := listeners(cfg, svcTargets)
		for _, p := range svc.Ports {
			pp := parsePort(t, p)
			var found bool
			for _, l := range ls {
				port, every := portOf(t, l.addr)
				if port == pp.containerPort {
					require.True(t, every, "service %s publishes %s, but %s is %s: not reachable from outside the container", name, p, l.key, l.addr)
					found = true
					if l.key == "server.http_listen" {
						for _, tg := range svcTargets {
							apis[tg] = true
						}
					}
				}
			}
			require.True(t, found, "service %s publishes %s, but it opens no listener on port %s (%v)", name, p, pp.containerPort, ls)
		}

		// The signing key: set, in a volume that a one-shot service fills before this one
		// starts.
		if slices.ContainsFunc(svcTargets, func(tg string) bool { return slices.Contains(sealingTargets, tg) }) {
			key := cfg.Audit.SigningKeyFile
			require.NotEmpty(t, key, "service %s seals sessions (or checks seals) but audit.signing_key_file is not set: every session would fail audit verify", name)
			var volume string
			for _, m := range svc.mounts(t) {
				if m.named && strings.HasPrefix(key, m.target+"/") {
					volume = m.source
				}
			}
			require.NotEmpty(t, volume, "service %s: the signing key %s is not in a volume it mounts", name, key)
			var maker string
			for dep, cond := range svc.DependsOn {
				if cond != "service_completed_successfully" {
					continue
				}
				for _, m := range compose.Services[dep].mounts(t) {
					if m.source == volume {
						maker = dep
					}
				}
			}
			require.NotEmpty(t, maker, "service %s: nothing makes the signing key in volume %s before it starts (depends_on ... condition: service_completed_successfully)", name, volume)
		}
	}
	for _, tg := range componentTargets {
		require.True(t, seen[tg], "no compose service runs target %s", tg)
	}
	// The APIs operations.md promises: policies and resources, revocations, policy test
	// (policy); approvals and grants (approvals); retention (ingest); the audit API (query).
	for _, tg := range []string{"policy", "approvals", "ingest", "query"} {
		require.True(t, apis[tg], "the HTTP API of target %s is not on a published port", tg)
	}
	checkDockerignore(t)
}

// composeConfig is the config a Gatehouse service mounts, expanded with the service's
// environment as the container sees it.
func composeConfig(t *testing.T, name string, svc composeService) *config.Config {
	t.Helper()
	var hostFile string
	for _, m := range svc.mounts(t) {
		if m.target == svc.configPath() && !m.named {
			hostFile = m.source
		}
	}
	require.NotEmpty(t, hostFile, "service %s: %s is not mounted from the repository", name, svc.configPath())
	raw, err := os.ReadFile(repoPath(t, hostFile))
	require.NoError(t, err)
	text, err := config.Expand(string(raw), func(k string) (string, bool) { v, ok := svc.Environment[k]; return v, ok })
	require.NoError(t, err, "service %s: %s", name, hostFile)
	cfg, err := config.Parse([]byte(text))
	require.NoError(t, err, "service %s: %s", name, hostFile)
	return cfg
}

// checkDockerignore: the build context leaves out local state, binaries, node_modules and
// VCS data, and keeps what the build needs.
func checkDockerignore(t *testing.T) {
	raw, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err, "no .dockerignore: the build context would take .gatehouse/, bin/, node_modules and .git")
	var patterns []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			if strings.HasPrefix(pat, "!") {
				continue
			}
			for _, cand := range []string{pat, strings.TrimPrefix(pat, "**/")} {
				// A pattern matches the path or one of its parent directories.
				for q := p; q != "." && q != "/"; q = filepath.Dir(q) {
					if ok, _ := filepath.Match(cand, q); ok {
						return true
					}
				}
				if strings.HasPrefix(pat, "**/") {
					for _, part := range strings.Split(p, "/") {
						if ok, _ := filepath.Match(cand, part); ok {
							return true
						}
					}
				}
			}
		}
		return false
	}
	for _, p := range []string{".git/config", ".gatehouse/audit-signing.key", "bin/gatehouse", "query/console/ui/node_modules/x/index.js", "integration/integration.test"} {
		require.True(t, ignored(p), ".dockerignore lets %s into the build context", p)
	}
	for _, p := range []string{"go.mod", "go.sum", "go.work", "go.work.sum", "main.go", "schemas/go.mod", "query/console/web/index.html", "app/app.go"} {
		require.False(t, ignored(p), ".dockerignore leaves %s out, which the build needs", p)
	}
}
