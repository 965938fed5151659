package kube_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	ghttp "github.com/gatehouse/gatehouse/proxy/http"
	"github.com/gatehouse/gatehouse/proxy/kube"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/dev/localkube/kubetest"
	"github.com/gatehouse/gatehouse/services/identity"
)

// BenchmarkKubectlGetPods: the real kubectl's `get pods` (a process per run: discovery
// from its warmed cache, one list, the table printed) through the gateway and directly
// against the API server, alternating within each iteration. The caller is the same user
// and group both ways (directly with a client certificate of the cluster's CA, through the
// gateway with its OIDC token, which the gateway verifies, decides on and impersonates).
// Reported: the median latency of each (direct-ms/op, gateway-ms/op) and the median added
// by the gateway (added-ms/op); ns/op is a pair of runs.
func BenchmarkKubectlGetPods(b *testing.B) {
	e := startBench(b)
	ctx := context.Background()
	for i := range 5 {
		require.NoError(b, e.cluster.CreatePod(ctx, "default", fmt.Sprintf("web-%d", i), "main"))
	}
	certFile, keyFile, err := e.cluster.ClientCert("u-123", "devs")
	require.NoError(b, err)
	direct := filepath.Join(b.TempDir(), "direct.kubeconfig")
	require.NoError(b, os.WriteFile(direct, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: direct
  cluster: {server: %q, certificate-authority: %q}
users:
- name: u-123
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: direct
  context: {cluster: direct, user: u-123, namespace: default}
current-context: direct
`, e.cluster.URL, e.cluster.CAFile, certFile, keyFile), 0o600))
	via := e.kubeconfig(e.token)
	// Each its own discovery cache, warmed before the timing starts (as a user's is).
	run := func(kubeconfig, cache string) time.Duration {
		t0 := time.Now()
		out, err := kubetest.Kubectl(b, e.cluster, kubeconfig, "", "--cache-dir="+cache, "get", "pods")
		d := time.Since(t0)
		if err != nil || !strings.Contains(out, "web-4") {
			b.Fatalf("kubectl get pods: %v\n%s", err, out)
		}
		return d
	}
	dc, gc := filepath.Join(b.TempDir(), "cache-direct"), filepath.Join(b.TempDir(), "cache-gateway")
	run(direct, dc)
	run(via, gc)
	var ds, gs, added []float64
	b.ResetTimer()
	i := 0
	for b.Loop() {
		var d, g time.Duration
		if i%2 == 0 { // which goes first alternates too
			d, g = run(direct, dc), run(via, gc)
		} else {
			g, d = run(via, gc), run(direct, dc)
		}
		i++
		ds, gs = append(ds, ms(d)), append(gs, ms(g))
		added = append(added, ms(g)-ms(d))
	}
	b.ReportMetric(med(ds), "direct-ms/op")
	b.ReportMetric(med(gs), "gateway-ms/op")
	b.ReportMetric(med(added), "added-ms/op")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startBench is start for a benchmark: start takes a *testing.T, and this builds the same
// environment (cluster, bus, dev issuer, gateway with the Kubernetes profile, kubePolicies,
// the devs group bound to edit) for a testing.TB. Once start takes a testing.TB, this goes.
func startBench(t testing.TB) *env {
	t.Helper()
	c := kubetest.Start(t)
	log := slog.New(slog.NewTextHandler(logOut(), nil))
	b := bustest.Connect(t)
	pub := session.NewPublisher(b.JS, session.PublisherOptions{Spool: 10000, Wait: 5 * time.Second, Linger: 5 * time.Millisecond}, prometheus.NewRegistry(), log)
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	e := echo.New()
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	dev, err := identity.NewDevIssuer(hs.URL+identity.DevIssuerPath, t.TempDir(), log)
	require.NoError(t, err)
	dev.Register(e)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v := identity.NewVerifier(ctx, []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, log)
	eng, err := policy.Compile(kubePolicies, 1)
	require.NoError(t, err)
	res := resources{"prod-cluster": {Name: "prod-cluster", Type: "kubernetes", Audit: "buffered", Kubernetes: &config.HTTPBackend{
		URL: c.URL, CAFile: c.CAFile, Bearer: c.GatewayToken, PathPrefix: "/k8s/prod", TokenHeader: "Authorization",
		DecideBodyBytes: 1 << 20, RecordBodyBytes: 64 << 10, Timeout: 30 * time.Second}}}
	dir := t.TempDir()
	certFile, keyFile, err := devcert.Ensure(dir)
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	srv := ghttp.New(ghttp.Config{Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, BodyTimeout: 10 * time.Second,
		MaxHeaderBytes: 64 << 10, MaxBodyBytes: 8 << 20, MaxConnections: 200,
		Limits: session.Limits{ResultChunkBytes: 64 << 10, MaxResultBytes: 1 << 20, MaxSQLBytes: 64 << 10}},
		res, v, pub, engineDecider{eng}, prometheus.NewRegistry(), log)
	srv.SetProfile("kubernetes", kube.Profile{})
	require.NoError(t, srv.Sessions().Follow(ctx, b.JS))
	require.NoError(t, srv.Listen())
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx); close(done) }()
	t.Cleanup(func() {
		stop()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	kubetest.Admin(t, c, "", "create", "clusterrolebinding", "devs-edit", "--clusterrole=edit", "--group=devs")
	caPEM, err := os.ReadFile(certFile)
	require.NoError(t, err)
	kc := func(token string) string {
		p := filepath.Join(dir, "kubeconfig")
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
	tok, err := dev.Mint(identity.TokenRequest{Subject: "u-123", Name: "alice@example.com", Groups: []string{"devs"}})
	require.NoError(t, err)
	return &env{cluster: c, bus: b, kubeconfig: kc, token: tok}
}

