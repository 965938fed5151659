package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/dev/localkube/kubetest"
)

// BenchmarkKubectlGetPods: the real kubectl's `get pods` (a process per run: discovery
// from its warmed cache, one list, the table printed) through the gateway and directly
// against the API server, alternating within each iteration. The caller is the same user
// and group both ways (directly with a client certificate of the cluster's CA, through the
// gateway with its OIDC token, which the gateway verifies, decides on and impersonates).
// Reported: the median latency of each (direct-ms/op, gateway-ms/op) and the median added
// by the gateway (added-ms/op); ns/op is a pair of runs.
func BenchmarkKubectlGetPods(b *testing.B) {
	e := start(b)
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
