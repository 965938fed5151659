package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/config"
)

type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
}

// TestComposeFile checks what can be checked without a Docker engine: docker-compose.yml
// parses, every Gatehouse service runs a real target from deploy/Dockerfile, every
// component target has a service, and every config it mounts is valid.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]composeService `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for _, infra := range []string{"nats", "clickhouse", "postgres"} {
		require.Contains(t, compose.Services, infra)
	}
	var targets []string
	for _, line := range app.Targets() {
		targets = append(targets, strings.Fields(line)[0])
	}
	seen := map[string]bool{}
	for name, svc := range compose.Services {
		if svc.Build == nil {
			continue
		}
		require.Equal(t, "deploy/Dockerfile", svc.Build.Dockerfile, name)
		require.FileExists(t, filepath.Join("..", svc.Build.Context, svc.Build.Dockerfile), name)
		require.GreaterOrEqual(t, len(svc.Command), 2, name)
		require.Equal(t, "run", svc.Command[0], name)
		var target, cfgPath string
		for i, a := range svc.Command {
			if v, ok := strings.CutPrefix(a, "--target="); ok {
				target = v
			}
			if a == "--config" && i+1 < len(svc.Command) {
				cfgPath = svc.Command[i+1]
			}
		}
		for _, tg := range strings.Split(target, ",") {
			require.True(t, slices.Contains(targets, tg), "service %s runs unknown target %q", name, tg)
			seen[tg] = true
		}
		// The config the command names must be mounted from the repo, and be valid with the
		// service's environment.
		var hostFile string
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == cfgPath {
				hostFile = parts[0]
			}
		}
		require.NotEmpty(t, hostFile, "service %s: %s is not mounted", name, cfgPath)
		for k, v := range svc.Environment {
			t.Setenv(k, v)
		}
		cfg, err := config.Load(filepath.Join("..", hostFile))
		require.NoError(t, err, name)
		require.NoError(t, cfg.Validate(), name)
	}
	for _, tg := range []string{"policy", "proxy-postgres", "ingest", "query", "dev-issuer"} {
		require.True(t, seen[tg], "no compose service runs target %s", tg)
	}
}
