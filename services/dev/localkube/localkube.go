// Package localkube runs a real Kubernetes API server for tests: kube-apiserver and etcd,
// built from the Go module proxy by Build and cached outside the repository, started by
// Start as child processes on free loopback ports with their state in a given directory.
//
// The cluster authenticates with static tokens and client certificates, authorises with
// Node and RBAC, and writes an audit log of every request at Metadata level. Two identities
// are provided: an admin (system:masters) and the gateway (GatewayUser, allowed to
// impersonate users and groups and nothing else).
//
// No controller, scheduler or kubelet runs. A fake kubelet (fakekubelet.go.txt) stands in
// for one node, NodeName, serving the kubelet's exec, attach and port-forward endpoints with
// the kubelet's own streaming code and running commands on this machine, so that kubectl
// exec, attach and port-forward work through the API server. CreatePod makes a pod bound to
// that node and marks it running; Start creates one, default/shell with container main.
//
// Without kube-controller-manager some things a real cluster does do not happen: no
// namespace gets a default service account (the ServiceAccount admission plugin is off), a
// deleted namespace stays Terminating, nothing is garbage-collected, and pods are not
// scheduled (CreatePod binds them itself). Aggregated ClusterRoles (admin, edit, view) are
// aggregated once by Start.
//
// kubetest wraps Build and Start for tests.
package localkube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/devproc"
)

// Names of what Start creates.
const (
	// AdminUser is the admin's user name; it is in the group system:masters.
	AdminUser = "gatehouse-admin"
	// GatewayUser is the gateway's user name, bound by GatewayClusterRole to impersonate
	// users and groups.
	GatewayUser = "gatehouse-gateway"
	// GatewayClusterRole is the ClusterRole (and ClusterRoleBinding) that grants GatewayUser
	// impersonate on users and groups, and nothing else.
	GatewayClusterRole = "gatehouse-gateway-impersonator"
	// NodeName is the fake kubelet's node.
	NodeName = "fake-node"
	// ShellNamespace, ShellPod and ShellContainer name the pod Start creates.
	ShellNamespace = "default"
	ShellPod       = "shell"
	ShellContainer = "main"
)

// serviceIP is the first address of the service range, the kubernetes service's address.
const (
	serviceCIDR = "10.96.0.0/24"
	serviceIP   = "10.96.0.1"
)

// Options change how Start runs the cluster.
type Options struct {
	// Binaries to run; nil means Start calls Build(ctx, Log).
	Binaries *Binaries
	// Log receives Build's progress when Start builds; nil discards it.
	Log io.Writer
	// APIServerArgs are added to kube-apiserver's command line, after the fixture's own
	// flags (a later flag wins).
	APIServerArgs []string
}

// Cluster is a running API server with etcd and the fake kubelet. Its fields are set by
// Start and only read afterwards; every file is in Dir.
type Cluster struct {
	Dir string
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// CAFile is the CA certificate that signed the API server's serving certificate and
	// that the API server trusts for client certificates; CAKeyFile is its key, for tests
	// that make client certificates of their own (CN the user, O the groups).
	CAFile, CAKeyFile string

	// The admin, AdminUser in system:masters, as a bearer token and as a client
	// certificate. AdminKubeconfig uses the client certificate.
	AdminToken                  string
	AdminCertFile, AdminKeyFile string
	AdminKubeconfig             string

	// The gateway, GatewayUser, as a bearer token and as a client certificate.
	// GatewayKubeconfig uses the token.
	GatewayToken                    string
	GatewayCertFile, GatewayKeyFile string
	GatewayKubeconfig               string

	// AuditLog is the API server's audit log: JSON lines, one audit.k8s.io/v1 Event each
	// (stages ResponseStarted, ResponseComplete and Panic, at Metadata level).
	AuditLog string
	// The servers' own logs.
	APIServerLog, EtcdLog, KubeletLog string

	EtcdURL     string // http://127.0.0.1:PORT
	KubeletPort int    // the fake kubelet's HTTPS port on 127.0.0.1
	Binaries    *Binaries

	http                     *http.Client
	ca                       *ca
	etcd, apiserver, kubelet *devproc.Proc
	stopOnce                 sync.Once
}

// Start starts etcd, kube-apiserver and the fake kubelet with their files in dir (created if
// missing; use a fresh one per cluster), and returns once the API server is ready and the
// RBAC objects, the node and the shell pod exist. On failure everything started is stopped
// and the error quotes the end of the failing server's log.
func Start(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	bins := opts.Binaries
	if bins == nil {
		var err error
		if bins, err = Build(ctx, opts.Log); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Dir:          dir,
		Binaries:     bins,
		AuditLog:     filepath.Join(dir, "audit.log"),
		APIServerLog: filepath.Join(dir, "kube-apiserver.log"),
		EtcdLog:      filepath.Join(dir, "etcd.log"),
		KubeletLog:   filepath.Join(dir, "fake-kubelet.log"),
	}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, opts.APIServerArgs); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return nil, err
	}
	if err := c.createGatewayRBAC(ctx); err != nil {
		return nil, fmt.Errorf("gateway RBAC: %w", err)
	}
	if err := c.aggregateClusterRoles(ctx); err != nil {
		return nil, fmt.Errorf("aggregate cluster roles: %w", err)
	}
	if err := c.startKubelet(ctx); err != nil {
		return nil, err
	}
	if err := c.createNode(ctx); err != nil {
		return nil, fmt.Errorf("node %s: %w", NodeName, err)
	}
	if err := c.CreatePod(ctx, ShellNamespace, ShellPod, ShellContainer); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Stop kills the fake kubelet (with every command it runs), kube-apiserver and etcd, and
// returns once all of them are gone. It may be called more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.kubelet.Kill()
		c.apiserver.Kill()
		c.etcd.Kill()
	})
}

// ClientCert makes a client certificate that the API server takes as user in groups (CN
// the user, O the groups), signed by the cluster's CA, and returns its certificate and key
// files (PEM, in Dir/pki).
func (c *Cluster) ClientCert(user string, groups ...string) (certFile, keyFile string, err error) {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, user)
	sum := sha256.Sum256([]byte(user))
	return c.ca.issue(c.path("pki"), "user-"+safe+"-"+hex.EncodeToString(sum[:4]), false, user, groups)
}

func (c *Cluster) path(name string) string { return filepath.Join(c.Dir, name) }

// writeFiles makes the CA, certificates, keys, token file and audit policy.
func (c *Cluster) writeFiles() error {
	pki := c.path("pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	ca, err := newCA(pki)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	c.CAFile, c.CAKeyFile, c.ca = ca.certFile, ca.keyFile, ca
	for _, f := range []struct {
		name      string
		server    bool
		cn        string
		orgs      []string
		dns       []string
		cert, key *string
	}{
		{"apiserver", true, "kube-apiserver", nil, []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, nil, nil},
		{"apiserver-kubelet-client", false, "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil, nil},
		{"kubelet", true, "system:node:" + NodeName, []string{"system:nodes"}, []string{NodeName}, nil, nil},
		{"admin", false, AdminUser, []string{"system:masters"}, nil, &c.AdminCertFile, &c.AdminKeyFile},
		{"gateway", false, GatewayUser, nil, nil, &c.GatewayCertFile, &c.GatewayKeyFile},
	} {
		cert, key, err := ca.issue(pki, f.name, f.server, f.cn, f.orgs, f.dns...)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", f.name, err)
		}
		if f.cert != nil {
			*f.cert, *f.key = cert, key
		}
	}
	if err := writeServiceAccountKey(filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")); err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	if c.AdminToken, err = randomToken(); err != nil {
		return err
	}
	if c.GatewayToken, err = randomToken(); err != nil {
		return err
	}
	// token,user,uid,"group,..."
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s\n",
		c.AdminToken, AdminUser, AdminUser, c.GatewayToken, GatewayUser, GatewayUser)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	if c.http, err = newHTTPClient(c.CAFile); err != nil {
		return err
	}
	return os.WriteFile(c.path("audit-policy.yaml"), []byte(auditPolicy), 0o644)
}

// auditPolicy records every request at Metadata level: who (with the impersonated user and
// groups), what, and the answer's status, without bodies.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts a server whose ports freePort picked, until ready says it is up. A
// port taken meanwhile by someone else makes the server exit; then it is tried again on
// new ports, a few times.
func startServer(ctx context.Context, name, logPath string, timeout time.Duration,
	launch func() (*devproc.Proc, error), ready func(context.Context) error) (*devproc.Proc, error) {
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		p, err := launch()
		if err != nil {
			return nil, err
		}
		err = waitReady(ctx, p, timeout, ready)
		if err == nil {
			return p, nil
		}
		p.Kill()
		lastErr = fmt.Errorf("%s did not become ready: %w\n%s", name, err, logTail(logPath, 30))
		if !p.Exited() || ctx.Err() != nil || !strings.Contains(logTail(logPath, 50), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// waitReady polls ready until it succeeds, the process exits, or timeout passes.
func waitReady(ctx context.Context, p *devproc.Proc, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		if err = ready(ctx); err == nil {
			return nil
		}
		select {
		case <-p.Done:
			return fmt.Errorf("exited (%v); last check: %w", p.Err, err)
		case <-ctx.Done():
			return fmt.Errorf("%w; last check: %v", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(strings.TrimRight(string(data), "\n"), n)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	data := c.path("etcd")
	var err error
	c.etcd, err = startServer(ctx, "etcd", c.EtcdLog, time.Minute, func() (*devproc.Proc, error) {
		client, err := freePort()
		if err != nil {
			return nil, err
		}
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		return devproc.Start("etcd", c.Binaries.Etcd, []string{
			"--name=localkube",
			"--data-dir=" + data,
			"--listen-client-urls=" + c.EtcdURL,
			"--advertise-client-urls=" + c.EtcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=localkube=" + peerURL,
			"--initial-cluster-state=new",
			"--log-level=warn",
			// A test's cluster is thrown away; fsync only slows it down.
			"--unsafe-no-fsync",
		}, c.EtcdLog)
	}, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, c.EtcdURL+"/health", "", `"health":"true"`)
	})
	return err
}

func (c *Cluster) startAPIServer(ctx context.Context, extra []string) error {
	pki := c.path("pki")
	var err error
	c.apiserver, err = startServer(ctx, "kube-apiserver", c.APIServerLog, 3*time.Minute, func() (*devproc.Proc, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		args := []string{
			"--etcd-servers=" + c.EtcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + pki,
			"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
			"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
			"--client-ca-file=" + c.CAFile,
			"--token-auth-file=" + filepath.Join(pki, "tokens.csv"),
			"--anonymous-auth=false",
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
			"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
			"--service-cluster-ip-range=" + serviceCIDR,
			"--audit-policy-file=" + c.path("audit-policy.yaml"),
			"--audit-log-path=" + c.AuditLog,
			"--audit-log-mode=blocking",
			"--kubelet-client-certificate=" + filepath.Join(pki, "apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + filepath.Join(pki, "apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + c.CAFile,
			"--kubelet-preferred-address-types=InternalIP",
			// No controller manager runs to make each namespace's default service account.
			"--disable-admission-plugins=ServiceAccount",
			"--allow-privileged=true",
			"--profiling=false",
			// No other API server shares the kubernetes service's endpoints.
			"--endpoint-reconciler-type=none",
		}
		return devproc.Start("kube-apiserver", c.Binaries.APIServer, append(args, extra...), c.APIServerLog)
	}, func(ctx context.Context) error {
		if err := httpOK(ctx, c.http, c.URL+"/readyz", c.AdminToken, "ok"); err != nil {
			return err
		}
		// The default namespace is made by the API server's own controller, just after.
		return c.Do(ctx, http.MethodGet, "/api/v1/namespaces/default", "", nil, nil)
	})
	return err
}

// httpOK GETs url and checks for a 200 whose body holds want.
func httpOK(ctx context.Context, client *http.Client, url, token, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, lastLines(strings.TrimSpace(string(body)), 10))
	}
	return nil
}

func (c *Cluster) startKubelet(ctx context.Context) error {
	portFile := c.path("fake-kubelet.port")
	p, err := devproc.Start("fake-kubelet", c.Binaries.Kubelet, []string{
		"-cert=" + c.path("pki/kubelet.crt"),
		"-key=" + c.path("pki/kubelet.key"),
		"-client-ca=" + c.CAFile,
		"-port-file=" + portFile,
		"-workdir=" + c.path("kubelet"),
	}, c.KubeletLog)
	if err != nil {
		return err
	}
	c.kubelet = p
	err = waitReady(ctx, p, 30*time.Second, func(context.Context) error {
		data, err := os.ReadFile(portFile)
		if err != nil {
			return err
		}
		c.KubeletPort, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err
	})
	if err != nil {
		return fmt.Errorf("fake kubelet did not start: %w\n%s", err, logTail(c.KubeletLog, 20))
	}
	return nil
}

// createNode registers the fake kubelet as a ready node at 127.0.0.1:KubeletPort.
func (c *Cluster) createNode(ctx context.Context) error {
	if err := c.create(ctx, "/api/v1/nodes", obj{
		"apiVersion": "v1", "kind": "Node",
		"metadata": obj{"name": NodeName, "labels": obj{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux"}},
	}); err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	resources := obj{"cpu": "2", "memory": "4Gi", "pods": "110"}
	return c.Do(ctx, http.MethodPatch, "/api/v1/nodes/"+NodeName+"/status", "application/merge-patch+json", obj{
		"status": obj{
			"addresses": []obj{
				{"type": "InternalIP", "address": "127.0.0.1"},
				{"type": "Hostname", "address": NodeName},
			},
			"daemonEndpoints": obj{"kubeletEndpoint": obj{"Port": c.KubeletPort}},
			"conditions": []obj{{
				"type": "Ready", "status": "True", "reason": "KubeletReady",
				"message":           "localkube's fake kubelet is serving",
				"lastHeartbeatTime": now, "lastTransitionTime": now,
			}},
			"capacity":    resources,
			"allocatable": resources,
			"nodeInfo": obj{
				"kubeletVersion": KubeVersion, "operatingSystem": "linux", "architecture": "amd64",
				"containerRuntimeVersion": "localkube://fake",
			},
		},
	}, nil)
}

// CreatePod creates pod ns/name (and namespace ns, when missing) with the named containers,
// bound to NodeName, and sets its status to Running with every container started and
// ready, so that kubectl exec, attach and port-forward reach the fake kubelet. A pod that
// exists already is left as it is, its status set again.
func (c *Cluster) CreatePod(ctx context.Context, ns, name string, containers ...string) error {
	if len(containers) == 0 {
		return errors.New("create pod: no container named")
	}
	if err := c.create(ctx, "/api/v1/namespaces", obj{"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns)}); err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	var specs, statuses []obj
	now := time.Now().UTC().Format(time.RFC3339)
	for _, ct := range containers {
		specs = append(specs, obj{"name": ct, "image": "localkube.invalid/fake:latest", "imagePullPolicy": "Never"})
		statuses = append(statuses, obj{
			"name": ct, "ready": true, "started": true, "restartCount": 0,
			"image": "localkube.invalid/fake:latest", "imageID": "localkube://fake",
			"containerID": "localkube://" + ns + "/" + name + "/" + ct,
			"state":       obj{"running": obj{"startedAt": now}},
		})
	}
	path := "/api/v1/namespaces/" + ns + "/pods"
	if err := c.create(ctx, path, obj{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": meta(name),
		"spec": obj{
			"nodeName":                      NodeName,
			"containers":                    specs,
			"automountServiceAccountToken":  false,
			"terminationGracePeriodSeconds": 0,
		},
	}); err != nil {
		return fmt.Errorf("create pod %s/%s: %w", ns, name, err)
	}
	var conditions []obj
	for _, t := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
		conditions = append(conditions, obj{"type": t, "status": "True", "lastTransitionTime": now})
	}
	if err := c.Do(ctx, http.MethodPatch, path+"/"+name+"/status", "application/merge-patch+json", obj{
		"status": obj{
			"phase":             "Running",
			"hostIP":            "127.0.0.1",
			"hostIPs":           []obj{{"ip": "127.0.0.1"}},
			"podIP":             "127.0.0.1",
			"podIPs":            []obj{{"ip": "127.0.0.1"}},
			"startTime":         now,
			"conditions":        conditions,
			"containerStatuses": statuses,
		},
	}, nil); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", ns, name, err)
	}
	return nil
}
