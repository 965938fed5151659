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
	"strconv"
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
// values, with the NATS dependency off (an external NATS), with secrets, TLS and replicas
// set, with least-privilege NATS (on the bundled cluster and on an external one), NATS TLS,
// a ClickHouse cluster and both kinds of spool volume, and checks what was rendered: every
// enabled target has a Deployment (a proxy with its spool on a claim: a StatefulSet)
// running it with its replicas, its container ports are the listeners its config opens,
// Services point at ports that exist, disruption budgets select their workload's pods, the
// config in the ConfigMap passes Gatehouse's validation with the environment the pods get
// and with placeholder files (an nkey seed, a certificate and key) where the config names
// files of Secrets the chart takes by name, no secret value is in a ConfigMap, the services
// that seal mount the signing key where the config says, and a proxy's audit.spool_dir is
// on its data volume. With natsAuth: every component binds, as its own user (its seed,
// from the Secret key USER.nk, and its inbox prefix), and mounts no other user's seed; the
// provisioning Job is a hook (pre-install with an external NATS, post-install with the
// bundled one, pre-upgrade), after its ConfigMap, whose config validates with the
// provision user's seed and the components' replicas. The chart's own refusals and a
// ClickHouse cluster config that validation refuses are checked too. Helm is built from
// the Go module proxy once (localhelm); the test skips only when the proxy cannot be
// reached. The NATS chart (a dependency from a chart repository, which is not reachable
// here) is replaced by an empty stand-in named nats: helm checks that a dependency is
// present even when its condition is off, and renders nothing of it when it is off or
// empty.
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
		require.ElementsMatch(t, []string{"policy", "approvals", "notifier", "proxy-postgres", "ingest", "query"}, slices.Collect(maps.Keys(r.workloads)))
		require.Equal(t, 2, r.workloads["proxy-postgres"].Spec.Replicas)
		require.Equal(t, "StatefulSet", r.workloads["proxy-postgres"].Kind, "the proxy's spool journal on a claim of its own")
		require.Equal(t, "Deployment", r.workloads["policy"].Kind)
		require.Equal(t, config.StreamsCreate, r.config.NATS.Streams, "no natsAuth: the components create the streams")
		require.Empty(t, r.objects["Job"], "no natsAuth: no provisioning Job")
		require.False(t, r.config.ClickHouse.Cluster.Enabled(), "one ClickHouse server")
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
		require.Equal(t, 5, r.workloads["query"].Spec.Replicas)
		require.ElementsMatch(t, []string{"dev-issuer", "policy", "approvals", "notifier", "sinks", "proxy-postgres", "proxy-ssh", "proxy-http", "ingest", "query"},
			slices.Collect(maps.Keys(r.workloads)), "every target")
		require.Equal(t, secrets[1], r.config.Resources[0].Postgres.Password, "the password reaches the config from the Secret")
		require.Equal(t, "/etc/gatehouse/tls/tls.crt", r.config.Proxy.Postgres.TLSCertFile)
		require.True(t, r.mounts("proxy-postgres", "/etc/gatehouse/tls"), "the TLS Secret is mounted where the config says")
		require.Equal(t, secrets[0], r.config.ClickHouse.Password)
	})
	t.Run("least-privilege NATS on the bundled cluster, mutual TLS, ClickHouse cluster", func(t *testing.T) {
		values := []string{"--set", "natsAuth.enabled=true", "--set", "natsAuth.existingSecrets.provision=ops-nats-provision",
			"--set", "natsTLS.caSecret=nats-ca", "--set", "natsTLS.clientSecret=nats-client", "--set", "natsTLS.clientSecrets.proxy-ssh=nats-client-ssh",
			"--set", "targets.proxy-ssh.enabled=true", "--set", "targets.proxy-http.enabled=true", "--set", "targets.sinks.enabled=true",
			"--set", "clickhouse.address=ch1:9000\\,ch2:9000", "--set", "clickhouse.cluster.name=audit",
			"--set", "clickhouse.cluster.zookeeperPath=/clickhouse/tables/{shard}/gh", "--set", "clickhouse.cluster.shardingKey=sipHash64(session_id)",
			"--set", "clickhouse.cluster.insertQuorum=2"}
		run(append([]string{"lint", "--strict", chart}, values...)...)
		out := run(append([]string{"template", "gh", chart, "--namespace", "gatehouse"}, values...)...)
		r := checkRendered(t, out, nil)
		users := []string{"policy", "approvals", "notifier", "sinks", "proxy-postgres", "proxy-ssh", "proxy-http", "ingest", "query"}
		require.ElementsMatch(t, users, slices.Collect(maps.Keys(r.workloads)))
		seeds := map[string]string{"provision": "ops-nats-provision"}
		for _, u := range users {
			seeds[u] = "gh-gatehouse-nats-" + u
		}
		checkLeastPrivilege(t, r, seeds)
		for user, cfg := range r.configs {
			require.Equal(t, "tls://gh-nats:4222", cfg.NATS.URL, user)
			require.Equal(t, 3, cfg.NATS.Replicas, "%s: the bundled cluster's 3 nodes (provision applies them)", user)
			f := r.natsFiles[user]
			require.Equal(t, secretRef{"nats-ca", "ca.crt"}, f["nats.tls.ca_file"], user)
			client := "nats-client"
			if user == "proxy-ssh" {
				client = "nats-client-ssh"
			}
			require.Equal(t, secretRef{client, "tls.crt"}, f["nats.tls.cert_file"], user)
			require.Equal(t, secretRef{client, "tls.key"}, f["nats.tls.key_file"], user)
		}
		job := r.objects["Job"]["gh-gatehouse-nats-provision"]
		cm := r.objects["ConfigMap"]["gh-gatehouse-nats-provision"]
		require.Equal(t, "post-install,pre-upgrade", job.Metadata.Annotations["helm.sh/hook"], "the bundled NATS exists only after the install")
		require.Equal(t, job.Metadata.Annotations["helm.sh/hook"], cm.Metadata.Annotations["helm.sh/hook"], "the Job's config is a hook of the same phases")
		require.Less(t, hookWeight(t, cm), hookWeight(t, job), "the Job's ConfigMap is made first")
		cl := r.config.ClickHouse
		require.Equal(t, []string{"ch1:9000", "ch2:9000"}, cl.Addresses())
		require.Equal(t, config.ClickHouseCluster{Name: "audit", ZooKeeperPath: "/clickhouse/tables/{shard}/gh", ShardingKey: "sipHash64(session_id)", InsertQuorum: 2}, cl.Cluster)
		for _, p := range []string{"proxy-postgres", "proxy-ssh", "proxy-http"} {
			require.Equal(t, "StatefulSet", r.workloads[p].Kind, p)
		}
	})
	t.Run("least-privilege NATS external, one Secret of seeds, spool on emptyDir", func(t *testing.T) {
		out := run("template", "gh", chart, "--namespace", "gatehouse",
			"--set", "nats.enabled=false", "--set", "externalNats.url=tls://n1.example:4222\\,tls://n2.example:4222",
			"--set", "natsAuth.enabled=true", "--set", "natsTLS.caSecret=nats-ca", "--set", "proxySpool.volume=emptyDir",
			"--set-json", `natsAuth.existingSecrets={"policy":"seeds","approvals":"seeds","notifier":"seeds","proxy-postgres":"seeds","ingest":"seeds","query":"seeds","provision":"seeds"}`,
			"--set-json", `config.nats={"replicas":3,"stream_max_bytes":1073741824}`)
		r := checkRendered(t, out, nil)
		seeds := map[string]string{}
		for u := range r.configs {
			seeds[u] = "seeds"
		}
		checkLeastPrivilege(t, r, seeds)
		for user, cfg := range r.configs {
			require.Equal(t, []string{"tls://n1.example:4222", "tls://n2.example:4222"}, cfg.NATS.Servers(), user)
			require.Equal(t, 3, cfg.NATS.Replicas, user)
			require.EqualValues(t, 1<<30, cfg.NATS.StreamMaxBytes, "%s: the provisioning shapes the streams with the components' settings", user)
			require.NotContains(t, r.natsFiles[user], "nats.tls.cert_file", "no client certificate")
		}
		require.Equal(t, "pre-install,pre-upgrade", r.objects["Job"]["gh-gatehouse-nats-provision"].Metadata.Annotations["helm.sh/hook"],
			"an external NATS: provisioned before the components start")
		require.Equal(t, "Deployment", r.workloads["proxy-postgres"].Kind)
	})
	t.Run("refused", func(t *testing.T) {
		// A ClickHouse cluster whose sharding key would split an event's copies: the
		// rendered config fails Gatehouse's validation, naming the setting.
		out := run("template", "gh", chart, "--set", "clickhouse.cluster.name=audit", "--set", "clickhouse.cluster.shardingKey=rand()")
		text := parseRendered(t, out)["ConfigMap"]["gh-gatehouse-config"].Data["gatehouse.yaml"]
		expanded, err := config.Expand(text, func(string) (string, bool) { return "x", true })
		require.NoError(t, err)
		cfg, err := config.Parse([]byte(expanded))
		require.NoError(t, err)
		require.ErrorContains(t, cfg.Validate(), "clickhouse.cluster.sharding_key")
		// The chart itself refuses what cannot work.
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--set", "natsAuth.enabled=true", "--set", "targets.dev-issuer.enabled=true"}, "dev-issuer is for trials and has no NATS user"},
			{[]string{"--set", "nats.enabled=false", "--set", "externalNats.url=nats://n1:4222", "--set", "natsTLS.caSecret=nats-ca"}, "every URL must say tls://"},
			{[]string{"--set", "natsTLS.clientSecrets.policy=policy-client"}, "no client certificate Secret for approvals"},
			{[]string{"--set", "proxySpool.volume=hostPath"}, "proxySpool.volume"},
		} {
			cmd := exec.CommandContext(ctx, helm, append([]string{"template", "gh", chart}, tc.args...)...)
			cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home+"/config", "HELM_CACHE_HOME="+home+"/cache", "HELM_DATA_HOME="+home+"/data")
			b, err := cmd.CombinedOutput()
			require.Error(t, err, "helm template %s", strings.Join(tc.args, " "))
			require.Contains(t, string(b), tc.want, "helm template %s", strings.Join(tc.args, " "))
		}
	})
}

// hookWeight is a Helm hook's helm.sh/hook-weight.
func hookWeight(t *testing.T, o k8sObject) int {
	t.Helper()
	w, err := strconv.Atoi(o.Metadata.Annotations["helm.sh/hook-weight"])
	require.NoError(t, err, "%s %s: hook weight", o.Kind, o.Metadata.Name)
	return w
}

// rendered is a checked rendering: the config (as target query's pod sees it), and by
// target the Deployment or StatefulSet running it, its config, and the Secret keys its
// nats files come from; the provisioning Job's under "provision".
type rendered struct {
	config    *config.Config
	workloads map[string]k8sObject
	configs   map[string]*config.Config
	natsFiles map[string]map[string]secretRef
	pods      map[string]podSpec
	objects   kinds
}

// kinds are rendered objects by kind and name.
type kinds map[string]map[string]k8sObject

// mounts says whether target's container mounts something at path.
func (r rendered) mounts(target, path string) bool {
	for _, m := range r.workloads[target].Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

// parseRendered reads helm template's output.
func parseRendered(t *testing.T, out string) kinds {
	t.Helper()
	byKind := kinds{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if o.Kind == "" {
			continue
		}
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]k8sObject{}
		}
		require.NotContains(t, byKind[o.Kind], o.Metadata.Name, "two %s %s", o.Kind, o.Metadata.Name)
		byKind[o.Kind][o.Metadata.Name] = o
	}
	return byKind
}

// secretValue reads a key of a rendered Secret.
func (k kinds) secretValue(t *testing.T, name, key string) (string, bool) {
	s, ok := k["Secret"][name]
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

// podConfig is the config file at cfgPath as the pod sees it: the ConfigMap key mounted
// there, expanded with the environment the pod gets (from Secrets and literal values),
// with its nats files resolved to the Secret keys the pod mounts there (natsFiles, whose
// placeholders Validate then loads). It is not validated yet.
func (k kinds) podConfig(t *testing.T, what string, pod podSpec, cfgPath string, ph placeholders) (*config.Config, map[string]secretRef) {
	t.Helper()
	c := pod.Containers[0]
	var cmName, key string // the ConfigMap key at cfgPath: a subPath mount, or a file of a directory mount
	for _, m := range c.VolumeMounts {
		v, ok := pod.volume(m.Name)
		if !ok || v.ConfigMap == nil {
			continue
		}
		switch {
		case m.SubPath != "" && m.MountPath == cfgPath:
			cmName, key = v.ConfigMap.Name, m.SubPath
		case m.SubPath == "" && m.MountPath == filepath.Dir(cfgPath):
			cmName, key = v.ConfigMap.Name, filepath.Base(cfgPath)
		}
	}
	require.NotEmpty(t, cmName, "%s: %s is not mounted from a ConfigMap", what, cfgPath)
	cm, ok := k["ConfigMap"][cmName]
	require.True(t, ok, "%s mounts ConfigMap %s, which is not rendered", what, cmName)
	text := cm.Data[key]
	require.NotEmpty(t, text, "ConfigMap %s has no %s", cmName, key)
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if s, ok := k["Secret"][ef.SecretRef.Name]; ok {
			for name := range s.Data {
				env[name], _ = k.secretValue(t, ef.SecretRef.Name, name)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
			continue
		}
		v, ok := k.secretValue(t, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		require.True(t, ok, "%s: env %s from Secret %s key %s, which is not rendered", what, e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		env[e.Name] = v
	}
	expanded, err := config.Expand(text, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err, "%s: the config names a variable the pod does not get", what)
	cfg, err := config.Parse([]byte(expanded))
	require.NoError(t, err, what)
	files := natsFiles(t, pod, cfg, t.TempDir(), ph)
	return cfg, files
}

// checkRendered parses helm template's output and checks it (see TestHelmChart); no value of
// secrets may appear in a ConfigMap.
func checkRendered(t *testing.T, out string, secrets []string) rendered {
	t.Helper()
	byKind := parseRendered(t, out)
	ph := newPlaceholders(t)
	for _, cm := range byKind["ConfigMap"] {
		for k, v := range cm.Data {
			for _, s := range secrets {
				require.NotContains(t, v, s, "ConfigMap %s, %s: a secret value is inlined", cm.Metadata.Name, k)
			}
		}
	}
	workloads := map[string]k8sObject{}
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for name, o := range byKind[kind] {
			workloads[name] = o
		}
	}
	// A disruption budget selects the pods of its Deployment or StatefulSet.
	for name, pdb := range byKind["PodDisruptionBudget"] {
		d, ok := workloads[name]
		require.True(t, ok, "PodDisruptionBudget %s has no Deployment or StatefulSet", name)
		require.Greater(t, d.Spec.Replicas, 1, "PodDisruptionBudget %s for a single copy would block every drain", name)
		require.NotEmpty(t, pdb.Spec.Selector.MatchLabels, name)
		for k, v := range pdb.Spec.Selector.MatchLabels {
			require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "PodDisruptionBudget %s selects other pods", name)
		}
	}
	r := rendered{workloads: map[string]k8sObject{}, configs: map[string]*config.Config{}, natsFiles: map[string]map[string]secretRef{},
		pods: map[string]podSpec{}, objects: byKind}
	for name, d := range workloads {
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
		require.NotEmpty(t, target, "%s %s runs no --target", d.Kind, name)
		require.Equal(t, "run", c.Args[0], name)
		require.NotContains(t, r.workloads, target, "two workloads run %s", target)
		require.Greater(t, d.Spec.Replicas, 0, name)
		for k, v := range d.Spec.Selector.MatchLabels {
			require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "%s %s: the selector does not match its pods", d.Kind, name)
		}
		r.workloads[target] = d
		r.pods[target] = pod

		// The config the pod reads, with the environment and files it gets from Secrets.
		cfg, files := byKind.podConfig(t, d.Kind+" "+name, pod, cfgPath, ph)
		require.NoError(t, cfg.Validate(), "%s %s: the rendered config is invalid", d.Kind, name)
		r.configs[target], r.natsFiles[target] = cfg, files
		if r.config == nil || target == "query" {
			r.config = cfg
		}

		// Container ports are exactly the listeners the target opens, on every interface.
		var want, got []string
		for _, l := range listeners(cfg, []string{target}) {
			port, every := portOf(t, l.addr)
			require.True(t, every, "%s %s: %s is %s, out of reach of its Service", d.Kind, name, l.key, l.addr)
			want = append(want, port)
		}
		named := map[string]bool{}
		for _, p := range c.Ports {
			got = append(got, fmt.Sprint(p.ContainerPort))
			named[p.Name] = true
		}
		sort.Strings(want)
		sort.Strings(got)
		require.Equal(t, want, got, "%s %s: container ports against the config's listeners", d.Kind, name)

		// Its Service exposes named ports the container has.
		svc, ok := byKind["Service"][name]
		require.True(t, ok, "no Service %s", name)
		for _, p := range svc.Spec.Ports {
			require.True(t, named[p.TargetPort], "Service %s: targetPort %s is no container port", name, p.TargetPort)
		}
		if d.Kind == "StatefulSet" {
			require.Equal(t, name, d.Spec.ServiceName, "StatefulSet %s: its Service", name)
		}

		// The signing key, where the config says, for every target that seals.
		if slices.Contains(sealingTargets, target) {
			require.NotEmpty(t, cfg.Audit.SigningKeyFile, name)
			ref := pod.secretFile(t, "audit.signing_key_file", cfg.Audit.SigningKeyFile)
			key, ok := byKind.secretValue(t, ref.Secret, ref.Key)
			require.True(t, ok, "%s %s: Secret %s has no %s", d.Kind, name, ref.Secret, ref.Key)
			seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(key))
			require.NoError(t, err, "the signing key is the base64 of a seed")
			require.Len(t, seed, 32, "the signing key is a 32-byte Ed25519 seed")
		}

		// A proxy's audit spool journal is on its data volume: a claim of the pod's own in a
		// StatefulSet, or an emptyDir.
		if strings.HasPrefix(target, "proxy-") {
			require.NotEqual(t, config.SpoolNone, cfg.Audit.SpoolDir, name)
			vol, _, ok := pod.fileMount(cfg.Audit.SpoolDir)
			require.True(t, ok, "%s %s: audit.spool_dir %s is on no volume (the root filesystem is read-only)", d.Kind, name, cfg.Audit.SpoolDir)
			v, inPod := pod.volume(vol)
			claim := slices.ContainsFunc(d.Spec.VolumeClaimTemplates, func(c claimTemplate) bool { return c.Metadata.Name == vol })
			if d.Kind == "StatefulSet" {
				require.True(t, claim && !inPod, "StatefulSet %s: audit.spool_dir is on volume %s, not a claim template", name, vol)
			} else {
				require.True(t, inPod && v.EmptyDir != nil, "Deployment %s: audit.spool_dir is on volume %s, not an emptyDir", name, vol)
			}
		}
	}

	// The NATS provisioning Job: runs gatehouse nats provision with its own config.
	for name, j := range byKind["Job"] {
		pod := j.Spec.Template.Spec
		require.Len(t, pod.Containers, 1, name)
		args := pod.Containers[0].Args
		require.GreaterOrEqual(t, len(args), 4, name)
		require.Equal(t, []string{"nats", "provision", "--config"}, args[:3], "Job %s", name)
		cfg, files := byKind.podConfig(t, "Job "+name, pod, args[3], ph)
		cfg.NATS.Streams = config.StreamsCreate // as gatehouse nats provision does
		require.NoError(t, cfg.Validate(), "Job %s: the rendered config is invalid", name)
		require.NotContains(t, r.configs, "provision", "two provisioning Jobs")
		r.configs["provision"], r.natsFiles["provision"], r.pods["provision"] = cfg, files, pod
	}
	return r
}

// checkLeastPrivilege checks a rendering with natsAuth: every component (and the
// provisioning Job, as user provision) is its own NATS user with its own inbox prefix and
// its seed from seeds[user] (a Secret key USER.nk), binds to the streams it did not make,
// and can read no other user's seed.
func checkLeastPrivilege(t *testing.T, r rendered, seeds map[string]string) {
	t.Helper()
	require.Contains(t, r.configs, "provision", "no provisioning Job")
	mine := map[string]secretRef{}
	for user, cfg := range r.configs {
		ref, ok := r.natsFiles[user]["nats.nkey_file"]
		require.True(t, ok, "%s: no nats.nkey_file", user)
		require.Equal(t, secretRef{seeds[user], user + ".nk"}, ref, "%s: its seed", user)
		require.Equal(t, "_INBOX."+user, cfg.NATS.InboxPrefix, user)
		if user != "provision" {
			require.Equal(t, config.StreamsBind, cfg.NATS.Streams, "%s binds", user)
		}
		mine[user] = ref
	}
	for user, pod := range r.pods {
		for _, got := range pod.secretKeys() {
			for other, ref := range mine {
				if other == user {
					continue
				}
				require.False(t, got == ref || got == secretRef{ref.Secret, "*"}, "%s can read %s's seed (Secret %s, %s)", user, other, got.Secret, got.Key)
			}
		}
	}
}
