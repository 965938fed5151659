// The Kubernetes profile against a real kube-apiserver with etcd (services/dev/localkube,
// built from the Go module proxy and cached outside the repository) and the real kubectl.

package kube_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/proxy/kube"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/proxy/session/sessiontest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/dev/localkube"
	"github.com/gatehouse/gatehouse/services/dev/localkube/kubetest"
	"github.com/gatehouse/gatehouse/services/identity"
)

type engineDecider struct{ e *policy.Engine }

func (d engineDecider) Decide(_ context.Context, r *schemas.DecisionRequest) schemas.DecisionReply {
	return d.e.Decide(&policy.Input{DecisionRequest: *r}, time.Now())
}

type resources map[string]*config.Resource

func (r resources) Resource(name string) (*config.Resource, bool) { res, ok := r[name]; return res, ok }
func (r resources) All() map[string]*config.Resource              { return r }

var kubePolicies = []config.Policy{{Name: "cluster", Resources: []string{"prod-cluster"}, Rules: []config.Rule{
	{Name: "reads", Effect: "allow", When: `request.kube.verb in ["get", "list", "watch"] && request.kube.subresource == ""`},
	{Name: "discovery", Effect: "allow", When: `!request.kube.resource_request`},
	{Name: "configmaps", Effect: "allow", When: `request.kube.resource == "configmaps" && request.kube.namespace == "default"`},
	{Name: "exec-tools", Effect: "allow", When: `request.kube.subresource == "exec" && request.kube.command.size() > 0 && request.kube.command[0] in ["echo", "cat", "printf"]`},
	{Name: "no-shells", Effect: "deny", When: `request.kube.subresource == "exec" && request.kube.command.size() > 0 && request.kube.command[0] in ["sh", "bash"]`, Reason: "no shells in production"},
	{Name: "reveal-for-admins", Effect: "allow", When: `"kube-admins" in identity.groups && request.kube.resource == "secrets"`, Reveal: []string{"secrets"}},
}}}

type env struct {
	cluster    *localkube.Cluster
	bus        *bus.Bus
	kubeconfig func(token string) string
	mint       func(identity.TokenRequest) string
	token      string
	addr       string // the gateway's
	caFile     string // its certificate
}

// front puts something between the gateway and the API server: given the API server's
// URL and CA file and the gateway's certificate, it returns the URL and CA the gateway
// calls instead.
type front func(t testing.TB, url, caFile string, cert tls.Certificate, certFile string) (string, string)

func logOut() io.Writer {
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func start(t testing.TB) *env {
	t.Helper()
	return startWith(t, kubePolicies)
}

// startWith is start with other policies (and, when fronts has one, something between the
// gateway and the API server).
func startWith(t testing.TB, policies []config.Policy, fronts ...front) *env {
	t.Helper()
	c := kubetest.Start(t)
	log := slog.New(slog.NewTextHandler(logOut(), nil))
	b := bustest.Connect(t)
	pub := sessiontest.Publisher(t, b, log)
	v, mint := sessiontest.Issuer(t, log)
	eng, err := policy.Compile(policies, 1)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile, err := devcert.Ensure(dir)
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	beURL, beCA := c.URL, c.CAFile
	for _, f := range fronts {
		beURL, beCA = f(t, beURL, beCA, cert, certFile)
	}
	res := resources{"prod-cluster": {Name: "prod-cluster", Type: "kubernetes", Audit: "buffered", Kubernetes: &config.HTTPBackend{
		URL: beURL, CAFile: beCA, Bearer: c.GatewayToken, PathPrefix: "/k8s/prod", TokenHeader: "Authorization",
		DecideBodyBytes: 1 << 20, RecordBodyBytes: 64 << 10, Timeout: 30 * time.Second}}}
	srv := ghttp.New(ghttp.Config{Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, BodyTimeout: 10 * time.Second,
		MaxHeaderBytes: 64 << 10, MaxBodyBytes: 8 << 20, MaxConnections: 200,
		Limits: session.Limits{ResultChunkBytes: 64 << 10, MaxResultBytes: 1 << 20, MaxSQLBytes: 64 << 10}},
		res, v, pub, engineDecider{eng}, prometheus.NewRegistry(), log)
	srv.SetProfile("kubernetes", kube.Profile{})
	require.NoError(t, srv.Sessions().Follow(t.Context(), b.JS))
	require.NoError(t, srv.Listen())
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx); close(done) }()
	t.Cleanup(func() {
		stop()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	// The callers' group may edit the cluster (its own RBAC applies through impersonation).
	kubetest.Admin(t, c, "", "create", "clusterrolebinding", "devs-edit", "--clusterrole=edit", "--group=devs")
	caPEM, err := os.ReadFile(certFile)
	require.NoError(t, err)
	n := 0
	kc := func(token string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("kubeconfig-%d", n))
		cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: gw
  cluster:
    server: https://%s/k8s/prod
    certificate-authority-data: %s
users:
- name: caller
  user:
    token: %s
contexts:
- name: gw
  context: {cluster: gw, user: caller, namespace: default}
current-context: gw
`, srv.Addr(), b64(caPEM), token)
		require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
		return p
	}
	tok := mint(identity.TokenRequest{Subject: "u-123", Name: "alice@example.com", Groups: []string{"devs"}})
	return &env{cluster: c, bus: b, kubeconfig: kc, mint: mint, token: tok, addr: srv.Addr(), caFile: certFile}
}

func b64(b []byte) string {
	var buf bytes.Buffer
	enc := base64Encoder(&buf)
	enc.Write(b)
	enc.Close()
	return buf.String()
}

func (e *env) kubectl(t *testing.T, token, stdin string, args ...string) (string, error) {
	t.Helper()
	return kubetest.Kubectl(t, e.cluster, e.kubeconfig(token), stdin, args...)
}

// events reads the audit trail of a resource until cond holds of it.
func (e *env) events(t *testing.T, resource string, cond func([]schemas.Event) bool) []schemas.Event {
	t.Helper()
	return sessiontest.Events(t, e.bus, resource, cond)
}

func ofType[T any](t *testing.T, evs []schemas.Event, typ string) []T {
	t.Helper()
	return sessiontest.OfType[T](t, evs, typ)
}

// TestKubectlThroughTheGateway: get, list, apply, delete with plain kubectl; the API server
// sees the caller by impersonation (its audit log), the gateway decides on what the API
// server's own parser reads.
func TestKubectlThroughTheGateway(t *testing.T) {
	e := start(t)
	out, err := e.kubectl(t, e.token, "", "get", "pods", "-o", "name")
	require.NoError(t, err)
	require.Contains(t, out, "pod/shell")
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config, namespace: default}\ndata: {mode: blue}\n"
	_, err = e.kubectl(t, e.token, cm, "apply", "-f", "-")
	require.NoError(t, err)
	out, err = e.kubectl(t, e.token, "", "get", "configmap", "app-config", "-o", "jsonpath={.data.mode}")
	require.NoError(t, err)
	require.Equal(t, "blue", out)
	_, err = e.kubectl(t, e.token, "", "delete", "configmap", "app-config")
	require.NoError(t, err)
	// Not allowed by policy: creating a namespace.
	_, err = e.kubectl(t, e.token, "", "create", "namespace", "sneaky")
	require.Error(t, err)
	require.Contains(t, err.Error(), "Forbidden")
	// The caller cannot pick who it is.
	_, err = e.kubectl(t, e.token, "", "get", "pods", "--as=system:admin")
	require.Error(t, err)

	// Impersonation: the API server's audit log names the caller.
	audit, err := os.ReadFile(e.cluster.AuditLog)
	require.NoError(t, err)
	require.Contains(t, string(audit), `"impersonatedUser":{"username":"alice@example.com"`)

	evs := e.events(t, "prod-cluster", func(evs []schemas.Event) bool {
		for _, r := range ofType[schemas.HttpRequest](t, evs, schemas.TypeHttpRequest) {
			if r.Kube != nil && r.Kube.Verb == "delete" && r.Kube.Resource == "configmaps" && r.Kube.Name == "app-config" {
				return true
			}
		}
		return false
	})
	var verbs []string
	for _, r := range ofType[schemas.HttpRequest](t, evs, schemas.TypeHttpRequest) {
		if r.Kube != nil {
			verbs = append(verbs, r.Kube.Verb+" "+r.Kube.Resource)
		}
	}
	require.Contains(t, verbs, "list pods")
	require.Contains(t, verbs, "create namespaces")
}

// TestSecretsMasked: Secret values are masked in get, list, watch and in kubectl's own
// output formats, unless a rule reveals them.
func TestSecretsMasked(t *testing.T) {
	e := start(t)
	kubetest.Admin(t, e.cluster, "", "create", "secret", "generic", "db", "--from-literal=password=hunter2-s3cret")
	kubetest.Admin(t, e.cluster, "apiVersion: v1\nkind: Secret\nmetadata: {name: applied, namespace: default}\nstringData: {token: tok-applied-9911}\n", "apply", "-f", "-")
	clear := []string{"aHVudGVyMi1zM2NyZXQ=", "hunter2-s3cret", "tok-applied-9911", "dG9rLWFwcGxpZWQtOTkxMQ=="}
	for _, args := range [][]string{
		{"get", "secret", "db", "-o", "yaml"},
		{"get", "secrets", "-o", "json"},
		{"get", "secret", "applied", "-o", "json"},
		{"get", "secrets"},
		{"get", "secret", "db", "-o", "jsonpath={.data}"},
		{"get", "secrets", "-A", "-o", "yaml"},
		{"get", "secrets", "--output-watch-events", "-o", "json", "--watch-only=false", "--request-timeout=1s"},
	} {
		out, err := e.kubectl(t, e.token, "", args...)
		if !strings.Contains(strings.Join(args, " "), "request-timeout") {
			require.NoError(t, err, "%v", args)
		}
		for _, c := range clear {
			require.NotContains(t, out, c, "%v", args)
		}
	}
	// A watch: the event's object is masked too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = ctx
	out, _ := e.kubectl(t, e.token, "", "get", "secrets", "--watch", "-o", "json", "--request-timeout=3s")
	require.Contains(t, out, `"db"`)
	for _, c := range clear {
		require.NotContains(t, out, c)
	}
	// Revealed for the group a rule names.
	adm := e.mint(identity.TokenRequest{Subject: "u-9", Name: "root@example.com", Groups: []string{"devs", "kube-admins"}})
	out, err := e.kubectl(t, adm, "", "get", "secret", "db", "-o", "jsonpath={.data.password}")
	require.NoError(t, err)
	require.Equal(t, "aHVudGVyMi1zM2NyZXQ=", out)
}

// TestExecRecorded: kubectl exec is decided on its command and recorded as terminal
// frames; a shell is refused; port-forward is refused without a rule.
func TestExecRecorded(t *testing.T) {
	e := start(t)
	out, err := e.kubectl(t, e.token, "", "exec", "shell", "-c", "main", "--", "echo", "hello from the pod")
	require.NoError(t, err)
	require.Equal(t, "hello from the pod\n", out)
	out, err = e.kubectl(t, e.token, "some input\n", "exec", "-i", "shell", "-c", "main", "--", "cat")
	require.NoError(t, err)
	require.Equal(t, "some input\n", out)
	_, err = e.kubectl(t, e.token, "", "exec", "shell", "-c", "main", "--", "sh", "-c", "id")
	require.Error(t, err)
	require.Contains(t, err.Error(), "no shells in production")
	_, err = e.kubectl(t, e.token, "", "port-forward", "pod/shell", "18080:80", "--pod-running-timeout=5s")
	require.Error(t, err)

	evs := e.events(t, "prod-cluster", func(evs []schemas.Event) bool {
		n := 0
		for _, d := range ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone) {
			if d.Exit != "" {
				n++
			}
		}
		return n >= 2
	})
	var text strings.Builder
	var stdinHash bool
	for _, io := range ofType[schemas.KubeIo](t, evs, schemas.TypeKubeIo) {
		for _, f := range io.Frames {
			text.WriteString(f.Code + ":" + f.Data)
		}
		stdinHash = stdinHash || io.StdinSha256 != ""
	}
	require.Contains(t, text.String(), "o:hello from the pod")
	require.True(t, stdinHash, "stdin without a terminal is recorded by its hash")
	require.NotContains(t, text.String(), "i:some input", "and not in clear")
}
