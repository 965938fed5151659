package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/demoapi"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
	"github.com/gatehouse/gatehouse/services/dev/localkube/kubetest"
	"github.com/gatehouse/gatehouse/services/seal"
)

// TestHTTPAndKubernetesThroughTheGateway: an HTTP service and a Kubernetes API server
// behind the whole platform (every component in one process, the shipped dev config plus
// the two resources). curl reads masked JSON and a refund is held until a person approves it
// with the CLI; kubectl, configured by `gatehouse kubeconfig` with its credential plugin,
// lists pods, runs an exec held for approval and is replayed from ClickHouse with exactly
// the output the client saw; a revocation ends a live watch.
func TestHTTPAndKubernetesThroughTheGateway(t *testing.T) {
	cluster := kubetest.Start(t)
	kubetest.Admin(t, cluster, "", "create", "clusterrolebinding", "ops-edit", "--clusterrole=edit", "--group=ops")
	svc, err := demoapi.Start("svc-credential-1")
	require.NoError(t, err)
	t.Cleanup(svc.Stop)
	ch := chtest.Start(t)
	dataDir := t.TempDir()
	t.Setenv("GATEHOUSE_DATA_DIR", dataDir)
	t.Setenv("GATEHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_PG_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_SSH_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_HTTP_PROXY_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_CLICKHOUSE_ADDR", ch.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_ADDR", "127.0.0.1:1")
	cfg, err := config.Load("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfg.Audit.SigningKeyFile = filepath.Join(dataDir, "audit-signing.key")
	_, err = seal.LoadKey(cfg.Audit.SigningKeyFile, true)
	require.NoError(t, err)
	cfg.Resources = append(cfg.Resources,
		config.Resource{Name: "shop", Type: "http", Audit: "strict", Labels: map[string]string{"env": "dev"},
			HTTP: &config.HTTPBackend{URL: svc.URL, PathPrefix: "/shop", Bearer: "svc-credential-1"}},
		config.Resource{Name: "prod-cluster", Type: "kubernetes", Audit: "buffered", Labels: map[string]string{"env": "prod"},
			Kubernetes: &config.HTTPBackend{URL: cluster.URL, CAFile: cluster.CAFile, Bearer: cluster.GatewayToken, PathPrefix: "/k8s/prod"}})
	approval := &config.Approval{Approvers: []string{"approvers"}, Timeout: 2 * time.Minute}
	cfg.Policies = append(cfg.Policies,
		config.Policy{Name: "shop", Resources: []string{"shop"}, Rules: []config.Rule{
			{Name: "read", Effect: "allow", When: `"ops" in identity.groups && request.http.method == "GET"`},
			{Name: "cards", Effect: "mask", When: `true`, Mask: &config.Mask{Fields: []string{"$.customers[*].card_number"}, Detectors: []string{"email"}}},
			{Name: "refunds", Effect: "require_approval", When: `"ops" in identity.groups && request.http.method == "POST" && request.http.path == "/refunds"`,
				Reason: "refunds need a second person", Approval: approval},
			{Name: "bulk-refunds", Effect: "require_approval", When: `"ops" in identity.groups && request.http.method == "POST" && request.http.path == "/bulk-refunds"`,
				Reason: "bulk refunds are approved ahead", Approval: &config.Approval{Approvers: []string{"approvers"}, Timeout: 2 * time.Minute, Mode: "fail_fast", Window: 10 * time.Minute}},
		}},
		config.Policy{Name: "cluster", Resources: []string{"prod-cluster"}, Rules: []config.Rule{
			{Name: "reads", Effect: "allow", When: `"ops" in identity.groups && request.kube.verb in ["get", "list", "watch"] && request.kube.subresource == ""`},
			{Name: "discovery", Effect: "allow", When: `!request.kube.resource_request`},
			{Name: "exec-with-approval", Effect: "require_approval", When: `"ops" in identity.groups && request.kube.subresource == "exec"`,
				Reason: "exec in production needs a second person", Approval: approval},
		}})
	require.NoError(t, cfg.Validate())
	a := runApp(t, cfg, "all")
	base := "http://" + a.HTTPAddr()
	g := &gateway{api: base, approvalsAPI: base, issuer: base}
	proxy := "https://" + a.ListenAddr("http")
	ops := g.token(t, "oncall", "ops")
	approver := g.token(t, "approver-1", "approvers")
	auditor := g.token(t, "auditor", "auditors")

	pem, err := os.ReadFile(filepath.Join(dataDir, "dev-tls.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 3 * time.Minute}
	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, proxy+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+ops)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Masked JSON.
	code, body := do("GET", "/shop/customers", "")
	require.Equal(t, 200, code, body)
	require.NotContains(t, body, "4111 1111 1111 1111")
	require.NotContains(t, body, "ada@example.com")
	require.Contains(t, body, "Ada Lovelace")

	// approve approves the pending approval of rule, once it is there.
	approve := func(rule string) string {
		var id string
		require.Eventually(t, func() bool {
			var list struct {
				Approvals []approvals.Approval `json:"approvals"`
			}
			require.NoError(t, g.cliJSONAt(t, base, approver, &list, "approvals", "list"))
			for _, x := range list.Approvals {
				if x.Request.Rule == rule {
					id = x.ID
					return true
				}
			}
			return false
		}, 60*time.Second, 50*time.Millisecond)
		var stdout, stderr bytes.Buffer
		require.Equal(t, 0, cli.Main([]string{"approvals", "approve", id, "--reason", "INC-9", "--url", base, "--token", approver}, &stdout, &stderr), stderr.String())
		return id
	}

	// A refund waits for its approval, then runs.
	type result struct {
		code int
		body string
	}
	held := make(chan result, 1)
	go func() {
		c, b := do("POST", "/shop/refunds", `{"customer": 1, "amount": 250}`)
		held <- result{c, b}
	}()
	approve("refunds")
	r := <-held
	require.Equal(t, 201, r.code, r.body)
	require.Contains(t, r.body, `"amount":250`)

	// fail_fast: answered 202 with the approval's id at once; the identical request runs once
	// approved (the demo service has no /bulk-refunds: its 404 shows the request reached it).
	code, body = do("POST", "/shop/bulk-refunds", `{"ids": [1, 2]}`)
	require.Equal(t, 202, code, body)
	require.Contains(t, body, `"approval_id"`)
	approve("bulk-refunds")
	code, body = do("POST", "/shop/bulk-refunds", `{"ids": [1, 2]}`)
	require.Equal(t, 404, code, body)

	// kubectl with the kubeconfig `gatehouse kubeconfig` writes (its credential plugin is
	// this gatehouse binary, reading GATEHOUSE_TOKEN).
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kcmd := exec.CommandContext(ctx, binary, "kubeconfig", "--resource", "prod-cluster", "--out", kc, "--url", base, "--no-browser")
	kcmd.Env = append(os.Environ(), "GATEHOUSE_TOKEN="+ops, "XDG_CACHE_HOME="+t.TempDir())
	out, err := kcmd.CombinedOutput()
	require.NoError(t, err, string(out))
	kubectl := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, cluster.Binaries.Kubectl, append([]string{"--kubeconfig", kc}, args...)...)
		cmd.Env = append(os.Environ(), "GATEHOUSE_TOKEN="+ops, "XDG_CACHE_HOME="+t.TempDir())
		return cmd
	}
	out, err = kubectl(ctx, "get", "pods", "-n", "default", "-o", "name").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "pod/shell")

	// An exec held for approval, then run.
	execOut := make(chan result, 1)
	go func() {
		var o, e bytes.Buffer
		cmd := kubectl(ctx, "exec", "-n", "default", "shell", "-c", "main", "--", "echo", "approved exec ran")
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		c := 0
		if err != nil {
			c = 1
		}
		execOut <- result{c, o.String() + e.String()}
	}()
	approve("exec-with-approval")
	r = <-execOut
	require.Equal(t, 0, r.code, r.body)
	require.Equal(t, "approved exec ran\n", r.body)

	// Replayed from ClickHouse, as the client saw it.
	var sessions struct {
		Sessions []struct {
			ID       string `json:"id"`
			Protocol string `json:"protocol"`
		} `json:"sessions"`
	}
	var replayed string
	require.Eventually(t, func() bool {
		if err := g.cliJSON(t, auditor, &sessions, "sessions", "list", "--protocol", "kubernetes", "--resource", "prod-cluster"); err != nil {
			return false
		}
		for _, s := range sessions.Sessions {
			var stdout, stderr bytes.Buffer
			if cli.Main([]string{"sessions", "replay", s.ID, "--asciicast", "-", "--url", base, "--token", auditor}, &stdout, &stderr) != 0 {
				continue
			}
			var data strings.Builder
			for i, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				var ev []any
				if i == 0 || json.Unmarshal([]byte(line), &ev) != nil {
					continue
				}
				if ev[1] == "o" {
					data.WriteString(ev[2].(string))
				}
			}
			if data.Len() > 0 {
				replayed = data.String()
				return true
			}
		}
		return false
	}, 60*time.Second, 200*time.Millisecond)
	require.Equal(t, "approved exec ran\n", replayed)

	// A revocation ends a live watch.
	watch := kubectl(ctx, "get", "pods", "-n", "default", "--watch", "-o", "name")
	stdout, err := watch.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, watch.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, line)
	admin := g.token(t, "admin-1", "gatehouse-admins")
	var so, se bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"revoke", "--identity", "oncall", "--reason", "incident over", "--url", base, "--token", admin}, &so, &se), se.String())
	ended := make(chan error, 1)
	go func() { ended <- watch.Wait() }()
	select {
	case <-ended:
	case <-time.After(60 * time.Second):
		t.Fatal("the revoked watch is still running")
	}
}
