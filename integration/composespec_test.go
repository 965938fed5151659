package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/services/config"
)

// What the compose tests read of docker-compose.yml and deploy/Dockerfile, and how they turn
// a container into a local process: each volume's source stands for its target path.

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

// composeService is one service, short syntax (the file uses no other).
type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Image       string            `yaml:"image"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   composeDependsOn  `yaml:"depends_on"`
}

// composeDependsOn is depends_on in either syntax: service name → condition.
type composeDependsOn map[string]string

// UnmarshalYAML reads a list of names (condition service_started) or a map of conditions.
func (d *composeDependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = composeDependsOn{}
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, s := range names {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	for s, c := range m {
		(*d)[s] = c.Condition
	}
	return nil
}

// mount is one volume of a service: a named volume or a bind mount of a host path.
type mount struct {
	source, target string
	named          bool
}

func (s composeService) mounts(t *testing.T) []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		require.GreaterOrEqual(t, len(parts), 2, "volume %q: want SOURCE:TARGET[:MODE]", v)
		m := mount{source: parts[0], target: parts[1]}
		m.named = !strings.HasPrefix(m.source, ".") && !strings.HasPrefix(m.source, "/")
		out = append(out, m)
	}
	return out
}

// targets are the Gatehouse targets of a service's `run` command ("" when it runs none).
func (s composeService) targets() []string {
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--target="); ok {
			return strings.Split(v, ",")
		}
	}
	return nil
}

// configPath is the container path of the config file a `run` command names.
func (s composeService) configPath() string {
	for i, a := range s.Command {
		if a == "--config" && i+1 < len(s.Command) {
			return s.Command[i+1]
		}
	}
	return ""
}

// loadCompose reads docker-compose.yml and interpolates it as `docker compose` does when no
// variable is set in the environment or an .env file: ${VAR:-default} is the default, $$ is
// a literal $, and a variable without a default is an error (compose would warn and use "").
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	const dollar = "\x00dollar\x00"
	text, err := config.Expand(strings.ReplaceAll(string(raw), "$$", dollar), func(string) (string, bool) { return "", false })
	require.NoError(t, err, "docker-compose.yml")
	var c composeFile
	require.NoError(t, yaml.Unmarshal([]byte(strings.ReplaceAll(text, dollar, "$")), &c))
	return c
}

// dockerImage is what the tests read of the final stage of deploy/Dockerfile.
type dockerImage struct {
	Entrypoint []string
	Workdir    string
	// Copied maps a path in the image to the build output it was copied from.
	Copied map[string]string
}

func loadDockerfile(t *testing.T, path string) dockerImage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var img dockerImage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM": // a new stage: only the last one is the image
			img = dockerImage{Copied: map[string]string{}}
		case "WORKDIR":
			img.Workdir = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			require.NoError(t, json.Unmarshal([]byte(rest), &img.Entrypoint), "ENTRYPOINT must be the exec (JSON) form")
		case "COPY":
			if f := strings.Fields(rest); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				img.Copied[f[2]] = f[1]
			}
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, img.Entrypoint, "%s: no ENTRYPOINT in the final stage", path)
	return img
}

// pathMap maps container paths to host paths, longest container path first.
type pathMap []struct{ container, host string }

func (m *pathMap) add(container, host string) {
	*m = append(*m, struct{ container, host string }{container, host})
	sort.SliceStable(*m, func(i, j int) bool { return len((*m)[i].container) > len((*m)[j].container) })
}

// translate replaces every container path in s (a path, or text holding paths) by its host
// path. A container path matches whole path components only.
func (m pathMap) translate(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		matched := false
		for _, p := range m {
			if !strings.HasPrefix(s[i:], p.container) {
				continue
			}
			end := i + len(p.container)
			if end < len(s) && s[end] != '/' && s[end] != '"' && s[end] != '\'' && s[end] != ' ' && s[end] != '\n' {
				continue
			}
			if i > 0 && s[i-1] != ' ' && s[i-1] != '"' && s[i-1] != '\'' && s[i-1] != '=' && s[i-1] != '\n' && s[i-1] != ':' {
				continue
			}
			b.WriteString(p.host)
			i, matched = end, true
			break
		}
		if !matched {
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// listener is a port a Gatehouse process opens, as its config says.
type listener struct {
	key, addr string
}

// listeners are the ports a process running targets opens, with cfg.
func listeners(cfg *config.Config, targets []string) []listener {
	out := []listener{{"server.http_listen", cfg.Server.HTTPListen}}
	for _, tg := range targets {
		switch tg {
		case "proxy-postgres", "all":
			out = append(out, listener{"proxy.postgres.listen", cfg.Proxy.Postgres.Listen})
		}
		switch tg {
		case "proxy-ssh", "all":
			out = append(out, listener{"proxy.ssh.listen", cfg.Proxy.SSH.Listen})
		}
		switch tg {
		case "proxy-http", "all":
			out = append(out, listener{"proxy.http.listen", cfg.Proxy.HTTP.Listen})
		}
	}
	return out
}

// publishedPort is one "[IP:]HOST:CONTAINER" entry of ports.
type publishedPort struct {
	hostIP, hostPort, containerPort string
}

func parsePort(t *testing.T, s string) publishedPort {
	t.Helper()
	s = strings.TrimSuffix(s, "/tcp")
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		return publishedPort{"", parts[0], parts[1]}
	case 3:
		return publishedPort{parts[0], parts[1], parts[2]}
	}
	t.Fatalf("port %q: want [IP:]HOST:CONTAINER", s)
	return publishedPort{}
}

// portOf is the port of a host:port, and whether the host is every interface (what a
// listener in a container needs for a published port to reach it).
func portOf(t *testing.T, addr string) (port string, everyInterface bool) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	ip := net.ParseIP(host)
	return port, host == "" || (ip != nil && ip.IsUnspecified())
}

// mustNotSet fails when env sets one of keys: the test sets those itself.
func mustNotSet(t *testing.T, service string, env map[string]string, keys ...string) {
	for _, k := range keys {
		_, set := env[k]
		require.False(t, set, fmt.Sprintf("service %s sets %s, which the compose test points at its local servers", service, k))
	}
}

// repoPath is a path relative to the repository root (where docker-compose.yml is).
func repoPath(t *testing.T, rel string) string {
	p, err := filepath.Abs(filepath.Join("..", rel))
	require.NoError(t, err)
	return p
}
