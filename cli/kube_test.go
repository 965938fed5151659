package cli

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/app"
)

// k8sExecCredential is client-go's ExecCredential with its field names as client-go reads
// them (k8s.io/client-go/pkg/apis/clientauthentication/v1), to hold the output to.
type k8sExecCredential struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     struct {
		Token                 string     `json:"token"`
		ExpirationTimestamp   *time.Time `json:"expirationTimestamp"`
		ClientCertificateData string     `json:"clientCertificateData"`
	} `json:"status"`
}

// decodeCredential decodes the plugin's output strictly: no field client-go does not know.
func decodeCredential(t *testing.T, out string) k8sExecCredential {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var ec k8sExecCredential
	require.NoError(t, dec.Decode(&ec), out)
	require.Equal(t, "client.authentication.k8s.io/v1", ec.APIVersion)
	require.Equal(t, "ExecCredential", ec.Kind)
	return ec
}

// fakeJWT is an unsigned token that expires at exp (the plugin reads exp, never verifies).
func fakeJWT(sub string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":%q,"exp":%d}`, sub, exp.Unix())) + ".sig"
}

func TestKubeCredentialFromEnv(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("KUBERNETES_EXEC_INFO", `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`)
	exp := time.Now().Add(30 * time.Minute).Truncate(time.Second)
	tok := fakeJWT("ada", exp)
	t.Setenv("GATEHOUSE_TOKEN", tok)
	code, out, errOut := run("kube", "credential", "--resource", "dev-k8s", "--url", "http://127.0.0.1:1")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
	ec := decodeCredential(t, out)
	require.Equal(t, tok, ec.Status.Token)
	require.NotNil(t, ec.Status.ExpirationTimestamp)
	require.True(t, exp.Equal(*ec.Status.ExpirationTimestamp), "%s != %s", exp, ec.Status.ExpirationTimestamp)
	require.Regexp(t, `"expirationTimestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`, out)

	// A token without exp: no expirationTimestamp (client-go then keeps it until a 401).
	enc := base64.RawURLEncoding.EncodeToString
	t.Setenv("GATEHOUSE_TOKEN", enc([]byte(`{"alg":"RS256"}`))+"."+enc([]byte(`{"sub":"svc"}`))+".sig")
	code, out, errOut = run("kube", "credential", "--resource", "dev-k8s")
	require.Equal(t, 0, code, errOut)
	require.Nil(t, decodeCredential(t, out).Status.ExpirationTimestamp)
	require.NotContains(t, out, "expirationTimestamp")

	t.Setenv("GATEHOUSE_TOKEN", "hunter2")
	code, _, errOut = run("kube", "credential", "--resource", "dev-k8s")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "GATEHOUSE_TOKEN is not a token")

	code, _, errOut = run("kube", "credential")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "needs --resource NAME")
}

// A cached token is used while it has more than a minute left; an expired (or nearly
// expired) one is not: without a terminal, the plugin says how to sign in.
func TestKubeCredentialCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("GATEHOUSE_TOKEN", "")
	t.Setenv("KUBERNETES_EXEC_INFO", `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`)
	base := "http://127.0.0.1:1"
	path, err := tokenCachePath(base)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(path, filepath.Join(cache, "gatehouse", "tokens")+string(filepath.Separator)), path)

	fresh := fakeJWT("ada", time.Now().Add(20*time.Minute))
	require.NoError(t, writeCachedToken(path, cachedToken{API: base, Issuer: "https://issuer", Token: fresh}))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	code, out, errOut := run("kube", "credential", "--resource", "dev-k8s", "--url", base)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, fresh, decodeCredential(t, out).Status.Token)

	// Another gateway's cache file is not this one's.
	code, _, errOut = run("kube", "credential", "--resource", "dev-k8s", "--url", "http://127.0.0.1:2")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no Gatehouse token for http://127.0.0.1:2")

	for _, exp := range []time.Duration{-time.Hour, 30 * time.Second} {
		require.NoError(t, writeCachedToken(path, cachedToken{API: base, Token: fakeJWT("ada", time.Now().Add(exp))}))
		code, out, errOut = run("kube", "credential", "--resource", "dev-k8s", "--url", base)
		require.Equal(t, 1, code, out)
		require.Empty(t, out)
		require.Contains(t, errOut, "run `gatehouse kube credential --resource dev-k8s --url "+base+"` once in a terminal")
	}
	// A file for another gateway written to this one's path (or garbage) is not used.
	require.NoError(t, writeCachedToken(path, cachedToken{API: "http://elsewhere", Token: fresh}))
	code, _, _ = run("kube", "credential", "--resource", "dev-k8s", "--url", base)
	require.Equal(t, 1, code)
	require.NoError(t, os.WriteFile(path, []byte("{"), 0o600))
	code, _, _ = run("kube", "credential", "--resource", "dev-k8s", "--url", base)
	require.Equal(t, 1, code)
}

func TestExecInteractive(t *testing.T) {
	for _, c := range []struct {
		info string
		want bool
	}{
		{"", true}, // by hand
		{`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`, true},
		{`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`, false},
		{`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{}}`, false},
	} {
		got, err := execInteractive(c.info)
		require.NoError(t, err)
		require.Equal(t, c.want, got, c.info)
	}
	_, err := execInteractive("{")
	require.ErrorContains(t, err, "KUBERNETES_EXEC_INFO is not an ExecCredential")
}

// The first call signs in (the device flow of the gateway's issuer) and caches the token;
// the next, without a terminal, uses the cache.
func TestKubeCredentialSignsInOnce(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("KUBERNETES_EXEC_INFO", `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}`)
	g := newSSHGateway(t, func(g *sshGateway) string { return g.dev.Issuer() })
	stdout, stderr, done := runAsync("kube", "credential", "--resource", "dev-k8s", "--url", g.url)
	page := waitFor(t, stderr, regexp.MustCompile(`(http://\S+/device\?user_code=\S+)`))
	u, err := url.Parse(page)
	require.NoError(t, err)
	resp, err := http.Get(page)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="form_token" value="([^"]+)"`).FindStringSubmatch(string(body))
	require.NotNil(t, m, string(body))
	resp, err = http.PostForm(g.dev.Issuer()+"/device", url.Values{"user_code": {u.Query().Get("user_code")}, "form_token": {m[1]},
		"action": {"approve"}, "sub": {"ada"}, "name": {"ada@example.com"}, "groups": {"ops"}, "ttl": {"30m"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 0, exitCode(t, done, stderr), stderr.String())
	ec := decodeCredential(t, stdout.String())
	require.NotEmpty(t, ec.Status.Token)
	require.NotNil(t, ec.Status.ExpirationTimestamp)
	require.WithinDuration(t, time.Now().Add(30*time.Minute), *ec.Status.ExpirationTimestamp, time.Minute)
	require.NotContains(t, stderr.String(), ec.Status.Token)

	t.Setenv("KUBERNETES_EXEC_INFO", `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}`)
	code, out, errOut := run("kube", "credential", "--resource", "dev-k8s", "--url", g.url)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
	require.Equal(t, ec.Status.Token, decodeCredential(t, out).Status.Token)
}

// k8sConfig is the part of client-go's kubeconfig (clientcmd/api/v1) the command writes.
type k8sConfig struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Clusters   []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Exec struct {
				APIVersion         string   `yaml:"apiVersion"`
				Command            string   `yaml:"command"`
				Args               []string `yaml:"args"`
				InteractiveMode    string   `yaml:"interactiveMode"`
				ProvideClusterInfo bool     `yaml:"provideClusterInfo"`
			} `yaml:"exec"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	CurrentContext string `yaml:"current-context"`
}

func TestKubeconfig(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	tok := fakeJWT("ada", time.Now().Add(time.Hour))
	t.Setenv("GATEHOUSE_TOKEN", tok)
	const caPEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case app.KubeClustersPath + "dev-k8s":
			_ = json.NewEncoder(w).Encode(app.KubeCluster{Resource: "dev-k8s", Server: "https://127.0.0.1:8443/k8s/dev", CAPEM: caPEM})
		case app.KubeClustersPath + "broken":
			_, _ = w.Write([]byte(`{"resource":"broken","server":"127.0.0.1:8443"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"no kubernetes resource \"orders\""}`))
		}
	}))
	t.Cleanup(srv.Close)

	code, out, errOut := run("kubeconfig", "--resource", "dev-k8s", "--url", srv.URL)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "Bearer "+tok, gotAuth)
	require.NotContains(t, out, tok)
	var kc k8sConfig
	dec := yaml.NewDecoder(strings.NewReader(out))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&kc), out)
	require.Equal(t, "v1", kc.APIVersion)
	require.Equal(t, "Config", kc.Kind)
	require.Equal(t, "gatehouse-dev-k8s", kc.CurrentContext)
	require.Len(t, kc.Clusters, 1)
	require.Equal(t, "https://127.0.0.1:8443/k8s/dev", kc.Clusters[0].Cluster.Server)
	ca, err := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster.CertificateAuthorityData)
	require.NoError(t, err)
	require.Equal(t, caPEM, string(ca))
	require.Len(t, kc.Users, 1)
	x := kc.Users[0].User.Exec
	self, err := os.Executable()
	require.NoError(t, err)
	require.True(t, filepath.IsAbs(x.Command))
	require.Equal(t, self, x.Command)
	require.Equal(t, "client.authentication.k8s.io/v1", x.APIVersion)
	require.Equal(t, []string{"kube", "credential", "--resource", "dev-k8s", "--url", srv.URL}, x.Args)
	require.Equal(t, "IfAvailable", x.InteractiveMode)
	require.False(t, x.ProvideClusterInfo)
	require.Contains(t, out, "provideClusterInfo: false")
	require.Equal(t, "gatehouse-dev-k8s", kc.Contexts[0].Context.Cluster)
	require.Equal(t, "gatehouse-dev-k8s", kc.Contexts[0].Context.User)

	// --out: the same, 0600, replaced whole.
	file := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(file, []byte("old contents that are longer than the new ones would be, surely"+strings.Repeat("x", 5000)), 0o644))
	code, out2, errOut := run("kubeconfig", "--resource", "dev-k8s", "--url", srv.URL, "--out", file)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out2)
	require.Contains(t, errOut, "Wrote "+file)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, out, string(b))
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// kubectl reads it, when it is on the machine.
	if _, err := exec.LookPath("kubectl"); err == nil {
		got, err := exec.Command("kubectl", "--kubeconfig", file, "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server} {.users[0].user.exec.interactiveMode}").CombinedOutput()
		require.NoError(t, err, string(got))
		require.Equal(t, "https://127.0.0.1:8443/k8s/dev IfAvailable", string(got))
	}

	code, _, errOut = run("kubeconfig", "--resource", "orders", "--url", srv.URL)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `ask the gateway for resource orders: 404 Not Found: no kubernetes resource "orders"`)
	code, _, errOut = run("kubeconfig", "--resource", "broken", "--url", srv.URL)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `the gateway answered resource broken with server "127.0.0.1:8443", not an http(s) URL`)
	code, _, errOut = run("kubeconfig")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "needs --resource NAME")
}

// TestKubeCredentialHelperProcess is not a test: run by the credential plugin script of
// TestKubectlThroughTheKubeconfig, it is `gatehouse` with the arguments after "--".
func TestKubeCredentialHelperProcess(t *testing.T) {
	if os.Getenv("GATEHOUSE_TEST_HELPER") != "1" {
		t.Skip("run by TestKubectlThroughTheKubeconfig")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(Main(args, os.Stdout, os.Stderr))
}

// Real kubectl reads the kubeconfig written, runs the credential plugin (client-go's exec
// protocol, v1), trusts the CA given, and calls the server with the token under the
// resource's path prefix; without a token and a terminal, it shows the plugin's advice.
func TestKubectlThroughTheKubeconfig(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl on this machine")
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	tok := fakeJWT("ada", time.Now().Add(time.Hour))
	var seen []string
	gw := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.Path)
		if r.Header.Get("Authorization") != "Bearer "+tok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"major":"1","minor":"31","gitVersion":"v1.31.0-gatehouse"}`))
	}))
	t.Cleanup(gw.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gw.Certificate().Raw})

	self, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	plugin := filepath.Join(dir, "gatehouse")
	require.NoError(t, os.WriteFile(plugin, []byte("#!/bin/sh\nGATEHOUSE_TEST_HELPER=1 exec '"+self+"' -test.run=TestKubeCredentialHelperProcess -- \"$@\"\n"), 0o755))
	b, err := kubeconfigYAML(app.KubeCluster{Resource: "dev-k8s", Server: gw.URL + "/k8s/dev", CAPEM: string(caPEM)}, "http://127.0.0.1:1", plugin)
	require.NoError(t, err)
	cfg := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(cfg, b, 0o600))

	t.Setenv("GATEHOUSE_TOKEN", tok)
	out, err := exec.Command(kubectl, "--kubeconfig", cfg, "version", "-o", "json").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), `"gitVersion": "v1.31.0-gatehouse"`)
	require.NotEmpty(t, seen)
	for _, p := range seen {
		require.Equal(t, "/k8s/dev/version", p, "under the resource's path prefix")
	}

	// No token, no cache, no terminal: kubectl fails with the plugin's advice.
	t.Setenv("GATEHOUSE_TOKEN", "")
	out, err = exec.Command(kubectl, "--kubeconfig", cfg, "version", "-o", "json").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "run `gatehouse kube credential --resource dev-k8s --url http://127.0.0.1:1` once in a terminal")
}
