package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localhelm"
)

const chartDir = "../deploy/helm/gatehouse"

// TestHelmChart lints deploy/helm/gatehouse and renders it (helm template) with its default
// values, with the NATS dependency off (an external NATS), and with secrets, TLS and
// replicas set, and checks what was rendered: every enabled target has a Deployment running
// it with its replicas, its container ports are the listeners its config opens, Services
// point at ports that exist, disruption budgets select their Deployment's pods, the config in the ConfigMap passes Gatehouse's validation with
// the environment the pods get, no secret value is in a ConfigMap, and the services that
// seal mount the signing key where the config says. Helm is built from the Go module proxy
// once (localhelm); the test skips only when the proxy cannot be reached. The NATS chart
// (a dependency from a chart repository, which is not reachable here) is replaced by an empty
// stand-in named nats: helm checks that a dependency is present even when its condition is
// off, and renders nothing of it when it is off or empty.
func TestHelmChart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	helm, err := localhelm.Build(ctx, &tlogWriter{t: t})
	if errors.Is(err, localhelm.ErrUnavailable) {
		t.Skipf("no Helm: %v", err)
	}
	require.NoError(t, err)
	chart := filepath.Join(t.TempDir(), "gatehouse")
	require.NoError(t, os.CopyFS(chart, os.DirFS(chartDir)))
	natsStub := filepath.Join(chart, "charts", "nats")
	require.NoError(t, os.MkdirAll(natsStub, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(natsStub, "Chart.yaml"), []byte("apiVersion: v2\nname: nats\nversion: 1.3.13\n"), 0o644))
	home := t.TempDir() // helm's config and cache: not the user's
	run := func(args ...string) string {
		cmd := exec.CommandContext(ctx, helm, args...)
		cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home+"/config", "HELM_CACHE_HOME="+home+"/cache", "HELM_DATA_HOME="+home+"/data")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "helm %s:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
		return stdout.String()
	}
	run("lint", "--strict", chart)

	t.Run("defaults", func(t *testing.T) {
		out := run("template", "gh", chart, "--namespace", "gatehouse")
		r := checkRendered(t, out, nil)
		require.Equal(t, "nats://gh-nats:4222", r.config.NATS.URL, "the NATS chart's client Service")
		require.Equal(t, 3, r.config.NATS.Replicas, "streams on the NATS chart's three nodes")
		require.ElementsMatch(t, []string{"policy", "approvals", "notifier", "proxy-postgres", "ingest", "query"}, slices.Collect(maps.Keys(r.deployments)))
		require.Equal(t, 2, r.deployments["proxy-postgres"].Spec.Replicas)
	})
	t.Run("external NATS, secrets, TLS, replicas", func(t *testing.T) {
		secrets := []string{"ch-password-never-inline", "pg-password-never-inline"}
		out := run("template", "gh", chart, "--namespace", "gatehouse",
			"--set", "nats.enabled=false", "--set", "externalNats.url=nats://nats.example:4222",
			"--set", "clickhouse.password="+secrets[0], "--set", "secretEnv.ORDERS_DB_PASSWORD="+secrets[1],
			"--set", "tls.secretName=gatehouse-tls", "--set", "targets.query.replicas=5",
			"--set", "targets.proxy-ssh.enabled=true", "--set", "targets.proxy-http.enabled=true", "--set", "targets.dev-issuer.enabled=true", "--set", "targets.sinks.enabled=true",
			"--set-json", `config.resources=[{"name":"orders-db","type":"postgres","postgres":{"address":"orders:5432","database":"orders","user":"gatehouse","password":"${ORDERS_DB_PASSWORD}"}}]`)
		r := checkRendered(t, out, secrets)
		require.Equal(t, "nats://nats.example:4222", r.config.NATS.URL)
		require.Equal(t, 1, r.config.NATS.Replicas, "an external NATS: config.nats.replicas says")
		require.Equal(t, 5, r.deployments["query"].Spec.Replicas)
		require.ElementsMatch(t, []string{"dev-issuer", "policy", "approvals", "notifier", "sinks", "proxy-postgres", "proxy-ssh", "proxy-http", "ingest", "query"},
			slices.Collect(maps.Keys(r.deployments)), "every target")
		require.Equal(t, secrets[1], r.config.Resources[0].Postgres.Password, "the password reaches the config from the Secret")
		require.Equal(t, "/etc/gatehouse/tls/tls.crt", r.config.Proxy.Postgres.TLSCertFile)
		require.True(t, r.mounts("proxy-postgres", "/etc/gatehouse/tls"), "the TLS Secret is mounted where the config says")
		require.Equal(t, secrets[0], r.config.ClickHouse.Password)
	})
}

// k8sObject is what the test reads of a rendered object.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		// Service
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	Containers []struct {
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env []struct {
			Name      string `yaml:"name"`
			ValueFrom *struct {
				SecretKeyRef struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		EnvFrom []struct {
			SecretRef struct {
				Name string `yaml:"name"`
			} `yaml:"secretRef"`
		} `yaml:"envFrom"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

// rendered is a checked rendering: the config (as target query's pod sees it) and the
// Deployments by target.
type rendered struct {
	config      *config.Config
	deployments map[string]k8sObject
}

// mounts says whether target's container mounts something at path.
func (r rendered) mounts(target, path string) bool {
	for _, m := range r.deployments[target].Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

// checkRendered parses helm template's output and checks it (see TestHelmChart); no value of
// secrets may appear in a ConfigMap.
func checkRendered(t *testing.T, out string, secrets []string) rendered {
	t.Helper()
	var objs []k8sObject
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	byKind := map[string]map[string]k8sObject{}
	for _, o := range objs {
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]k8sObject{}
		}
		byKind[o.Kind][o.Metadata.Name] = o
	}
	for _, cm := range byKind["ConfigMap"] {
		for k, v := range cm.Data {
			for _, s := range secrets {
				require.NotContains(t, v, s, "ConfigMap %s, %s: a secret value is inlined", cm.Metadata.Name, k)
			}
		}
	}
	// secretValue reads a key of a rendered Secret.
	secretValue := func(name, key string) (string, bool) {
		s, ok := byKind["Secret"][name]
		if !ok {
			return "", false
		}
		v, ok := s.Data[key]
		if !ok {
			return "", false
		}
		b, err := base64.StdEncoding.DecodeString(v)
		require.NoError(t, err, "Secret %s, %s", name, key)
		return string(b), true
	}
	// A disruption budget selects the pods of its Deployment.
	for name, pdb := range byKind["PodDisruptionBudget"] {
		d, ok := byKind["Deployment"][name]
		require.True(t, ok, "PodDisruptionBudget %s has no Deployment", name)
		require.Greater(t, d.Spec.Replicas, 1, "PodDisruptionBudget %s for a single copy would block every drain", name)
		require.NotEmpty(t, pdb.Spec.Selector.MatchLabels, name)
		for k, v := range pdb.Spec.Selector.MatchLabels {
			require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "PodDisruptionBudget %s selects other pods", name)
		}
	}
	r := rendered{deployments: map[string]k8sObject{}}
	for name, d := range byKind["Deployment"] {
		pod := d.Spec.Template.Spec
		require.Len(t, pod.Containers, 1, name)
		c := pod.Containers[0]
		var target, cfgPath string
		for i, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--target="); ok {
				target = v
			}
			if a == "--config" && i+1 < len(c.Args) {
				cfgPath = c.Args[i+1]
			}
		}
		require.NotEmpty(t, target, "Deployment %s runs no --target", name)
		require.Equal(t, "run", c.Args[0], name)
		require.NotContains(t, r.deployments, target, "two Deployments run %s", target)
		require.Greater(t, d.Spec.Replicas, 0, name)
		for k, v := range d.Spec.Selector.MatchLabels {
			require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "Deployment %s: the selector does not match its pods", name)
		}
		r.deployments[target] = d

		// The config the pod reads, with the environment it gets from Secrets.
		var cmName string
		for _, m := range c.VolumeMounts {
			if m.MountPath == cfgPath || filepath.Join(m.MountPath, m.SubPath) == cfgPath && m.SubPath != "" {
				for _, v := range pod.Volumes {
					if v.Name == m.Name && v.ConfigMap != nil {
						cmName = v.ConfigMap.Name
					}
				}
			}
		}
		require.NotEmpty(t, cmName, "Deployment %s: %s is not mounted from a ConfigMap", name, cfgPath)
		cm, ok := byKind["ConfigMap"][cmName]
		require.True(t, ok, "Deployment %s mounts ConfigMap %s, which is not rendered", name, cmName)
		text := cm.Data[filepath.Base(cfgPath)]
		require.NotEmpty(t, text, "ConfigMap %s has no %s", cmName, filepath.Base(cfgPath))
		env := map[string]string{}
		for _, ef := range c.EnvFrom {
			if s, ok := byKind["Secret"][ef.SecretRef.Name]; ok {
				for k := range s.Data {
					env[k], _ = secretValue(ef.SecretRef.Name, k)
				}
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil {
				v, ok := secretValue(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				require.True(t, ok, "Deployment %s: env %s from Secret %s key %s, which is not rendered", name, e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				env[e.Name] = v
			}
		}
		expanded, err := config.Expand(text, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		require.NoError(t, err, "Deployment %s: the config names a variable no Secret gives the pod", name)
		cfg, err := config.Parse([]byte(expanded))
		require.NoError(t, err, "Deployment %s", name)
		require.NoError(t, cfg.Validate(), "Deployment %s: the rendered config is invalid", name)
		if r.config == nil || target == "query" {
			r.config = cfg
		}

		// Container ports are exactly the listeners the target opens, on every interface.
		var want, got []string
		for _, l := range listeners(cfg, []string{target}) {
			port, every := portOf(t, l.addr)
			require.True(t, every, "Deployment %s: %s is %s, out of reach of its Service", name, l.key, l.addr)
			want = append(want, port)
		}
		named := map[string]bool{}
		for _, p := range c.Ports {
			got = append(got, fmt.Sprint(p.ContainerPort))
			named[p.Name] = true
		}
		sort.Strings(want)
		sort.Strings(got)
		require.Equal(t, want, got, "Deployment %s: container ports against the config's listeners", name)

		// Its Service exposes named ports the container has.
		svc, ok := byKind["Service"][name]
		require.True(t, ok, "no Service %s", name)
		for _, p := range svc.Spec.Ports {
			require.True(t, named[p.TargetPort], "Service %s: targetPort %s is no container port", name, p.TargetPort)
		}

		// The signing key, where the config says, for every target that seals.
		if slices.Contains(sealingTargets, target) {
			require.NotEmpty(t, cfg.Audit.SigningKeyFile, name)
			dir := filepath.Dir(cfg.Audit.SigningKeyFile)
			var secretName string
			for _, m := range c.VolumeMounts {
				if m.MountPath == dir {
					for _, v := range pod.Volumes {
						if v.Name == m.Name && v.Secret != nil {
							secretName = v.Secret.SecretName
						}
					}
				}
			}
			require.NotEmpty(t, secretName, "Deployment %s: no Secret is mounted at %s (audit.signing_key_file)", name, dir)
			key, ok := secretValue(secretName, filepath.Base(cfg.Audit.SigningKeyFile))
			require.True(t, ok, "Deployment %s: Secret %s has no %s", name, secretName, filepath.Base(cfg.Audit.SigningKeyFile))
			seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(key))
			require.NoError(t, err, "the signing key is the base64 of a seed")
			require.Len(t, seed, 32, "the signing key is a 32-byte Ed25519 seed")
		}
	}
	return r
}
