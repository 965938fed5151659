package localkube_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/dev/localkube"
	"github.com/gatehouse/gatehouse/services/dev/localkube/kubetest"
)

func kubectl(t *testing.T, c *localkube.Cluster, kubeconfig, stdin string, args ...string) (string, error) {
	t.Helper()
	return kubetest.Kubectl(t, c, kubeconfig, stdin, args...)
}

func admin(t *testing.T, c *localkube.Cluster, stdin string, args ...string) string {
	t.Helper()
	return kubetest.Admin(t, c, stdin, args...)
}

func TestCluster(t *testing.T) {
	c := kubetest.Start(t)
	t.Logf("binaries in %s (build time %s, built now: %v)", c.Binaries.Dir, c.Binaries.BuildDuration, c.Binaries.Built)

	t.Run("namespaces", func(t *testing.T) {
		t.Logf("kubectl %s:\n%s", c.Binaries.Kubectl, admin(t, c, "", "version"))
		out := admin(t, c, "", "get", "ns", "-o", "name")
		require.Contains(t, out, "namespace/default")
		require.Contains(t, out, "namespace/kube-system")
	})

	t.Run("apply", func(t *testing.T) {
		admin(t, c, `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {colour: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: default}
stringData: {password: hunter2}
`, "apply", "-f", "-")
		require.Equal(t, "blue", admin(t, c, "", "get", "configmap", "settings", "-o", "jsonpath={.data.colour}"))
		require.Equal(t, "aHVudGVyMg==", admin(t, c, "", "get", "secret", "creds", "-o", "jsonpath={.data.password}"))
	})

	t.Run("exec", func(t *testing.T) {
		require.Equal(t, "hi\n", admin(t, c, "", "exec", "shell", "-c", "main", "--", "echo", "hi"))
		// argv as given, no shell in between.
		require.Equal(t, "$HOME *\n", admin(t, c, "", "exec", "shell", "-c", "main", "--", "echo", "$HOME", "*"))
		require.Equal(t, "hello\nworld\n", admin(t, c, "hello\nworld\n", "exec", "-i", "shell", "-c", "main", "--", "cat"))

		_, err := kubectl(t, c, c.AdminKubeconfig, "", "exec", "shell", "-c", "main", "--", "sh", "-c", "echo oops >&2; exit 3")
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, 3, ee.ExitCode())
		require.Contains(t, err.Error(), "oops")
	})

	t.Run("exec with a terminal", func(t *testing.T) {
		cmd := exec.Command(c.Binaries.Kubectl, "--kubeconfig="+c.AdminKubeconfig,
			"exec", "-it", "shell", "-c", "main", "--", "sh", "-c", "tty; stty size")
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 101})
		require.NoError(t, err)
		defer ptmx.Close()
		out, _ := io.ReadAll(ptmx) // EIO once kubectl is gone
		require.NoError(t, cmd.Wait())
		require.Regexp(t, `/dev/pts/\d+`, string(out))
		require.Contains(t, string(out), "33 101")
	})

	t.Run("attach", func(t *testing.T) {
		require.Equal(t, "attached to default/shell/main\n", admin(t, c, "", "attach", "shell", "-c", "main"))
		require.Equal(t, "ping\n", admin(t, c, "ping\n", "attach", "-i", "shell", "-c", "main"))
	})

	t.Run("port-forward", func(t *testing.T) { testPortForward(t, c) })

	// kubectl speaks WebSockets to the API server, which translates to SPDY for the kubelet;
	// with them turned off, SPDY goes through as it is.
	t.Run("SPDY", func(t *testing.T) {
		t.Setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
		t.Setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
		require.Equal(t, "hi\n", admin(t, c, "", "exec", "shell", "-c", "main", "--", "echo", "hi"))
		require.Equal(t, "a\nb\n", admin(t, c, "a\nb\n", "exec", "-i", "shell", "-c", "main", "--", "cat"))
		require.Equal(t, "ping\n", admin(t, c, "ping\n", "attach", "-i", "shell", "-c", "main"))
		testPortForward(t, c)
	})

	t.Run("another pod", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, c.CreatePod(ctx, "team-a", "web", "app", "sidecar"))
		require.Equal(t, "Running", admin(t, c, "", "get", "pod", "-n", "team-a", "web", "-o", "jsonpath={.status.phase}"))
		require.Equal(t, "team-a/web/sidecar\n", admin(t, c, "", "exec", "-n", "team-a", "web", "-c", "sidecar", "--", "sh", "-c", `echo "$POD_NAMESPACE/$HOSTNAME/$CONTAINER_NAME"`))
	})

	t.Run("impersonation", func(t *testing.T) { testImpersonation(t, c) })

	t.Run("client certificate", func(t *testing.T) {
		cert, key, err := c.ClientCert("bob", "dev")
		require.NoError(t, err)
		creds := []string{"--client-certificate=" + cert, "--client-key=" + key}
		// dev may view default (the impersonation test bound it), nothing more.
		out, err := kubectl(t, c, c.AdminKubeconfig, "", append(creds, "get", "pods", "-o", "name")...)
		require.NoError(t, err)
		require.Contains(t, out, "pod/shell")
		_, err = kubectl(t, c, c.AdminKubeconfig, "", append(creds, "get", "nodes")...)
		require.ErrorContains(t, err, `User "bob" cannot list resource "nodes"`)
	})

	t.Run("stop leaves no process", func(t *testing.T) {
		// A command that would run for minutes, its client still connected.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		client := exec.CommandContext(ctx, c.Binaries.Kubectl, "--kubeconfig="+c.AdminKubeconfig,
			"exec", "shell", "-c", "main", "--", "sleep", "300")
		require.NoError(t, client.Start())
		require.Eventually(t, func() bool {
			return slices.ContainsFunc(processesIn(c.Dir), func(p string) bool { return strings.HasSuffix(p, ": sleep 300") })
		}, 30*time.Second, 20*time.Millisecond, "the exec'd sleep")
		require.Len(t, processesIn(c.Dir), 4, "etcd, kube-apiserver, the kubelet and sleep")
		c.Stop()
		require.Empty(t, processesIn(c.Dir))
		_ = client.Wait() // its connection is gone
	})
}

// An unreachable module proxy is the one failure that tests skip on.
func TestBuildWithoutModuleProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	ln.Close()
	t.Setenv("GATEHOUSE_CACHE", t.TempDir())
	t.Setenv("GOMODCACHE", t.TempDir()) // nothing downloaded yet
	t.Setenv("GOPROXY", "http://"+closed)
	t.Setenv("GOSUMDB", "off")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = localkube.Build(ctx, io.Discard)
	require.ErrorIs(t, err, localkube.ErrUnavailable)
	require.ErrorContains(t, err, "the Go module proxy cannot be reached")
	t.Log(err)
}

func testPortForward(t *testing.T, c *localkube.Cluster) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer conn.Close(); _, _ = io.Copy(conn, conn) }()
		}
	}()
	remote := ln.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binaries.Kubectl, "--kubeconfig="+c.AdminKubeconfig,
		"port-forward", "--address=127.0.0.1", "pod/shell", ":"+strconv.Itoa(remote))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	drained := make(chan struct{})
	defer func() {
		_ = cmd.Process.Kill()
		<-drained // Wait closes stdout: reads first
		_ = cmd.Wait()
	}()

	// "Forwarding from 127.0.0.1:LOCAL -> REMOTE"
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		close(drained)
		t.Fatalf("kubectl port-forward printed nothing: %s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout); close(drained) }()
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+) -> (\d+)`).FindStringSubmatch(sc.Text())
	require.NotNil(t, m, sc.Text())

	for i := range 3 { // each connection is a stream pair of its own
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+m[1], 10*time.Second)
		require.NoError(t, err)
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		msg := "ping " + strconv.Itoa(i) + "\n"
		_, err = io.WriteString(conn, msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(conn, got)
		require.NoError(t, err, stderr.String())
		require.Equal(t, msg, string(got))
		conn.Close()
	}
}

// lockedBuffer is a bytes.Buffer that a command writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testImpersonation(t *testing.T, c *localkube.Cluster) {
	// The gateway may impersonate and nothing else.
	_, err := kubectl(t, c, c.GatewayKubeconfig, "", "get", "pods")
	require.ErrorContains(t, err, `User "gatehouse-gateway" cannot list resource "pods"`)

	// As alice in dev, with no binding yet: RBAC applies to the impersonated user.
	_, err = kubectl(t, c, c.GatewayKubeconfig, "", "--as=alice", "--as-group=dev", "get", "pods")
	require.ErrorContains(t, err, `User "alice" cannot list resource "pods"`)

	// The built-in view role, aggregated by Start.
	admin(t, c, "", "create", "rolebinding", "dev-view", "--clusterrole=view", "--group=dev", "-n", "default")
	var out string
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		out, err = kubectl(t, c, c.GatewayKubeconfig, "", "--as=alice", "--as-group=dev", "get", "pods", "-o", "name")
		assert.NoError(ct, err)
	}, 30*time.Second, 100*time.Millisecond)
	require.Contains(t, out, "pod/shell")

	// The audit log names both the gateway and alice.
	type user struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	}
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(c.AuditLog)
		if err != nil {
			return false
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var ev struct {
				Verb             string `json:"verb"`
				Stage            string `json:"stage"`
				User             user   `json:"user"`
				ImpersonatedUser *user  `json:"impersonatedUser"`
				ObjectRef        struct {
					Resource, Namespace string
				} `json:"objectRef"`
				ResponseStatus struct {
					Code int `json:"code"`
				} `json:"responseStatus"`
			}
			if json.Unmarshal(line, &ev) != nil || ev.ImpersonatedUser == nil {
				continue
			}
			if ev.User.Username == localkube.GatewayUser && ev.ImpersonatedUser.Username == "alice" &&
				slices.Contains(ev.ImpersonatedUser.Groups, "dev") && ev.Verb == "list" &&
				ev.ObjectRef.Resource == "pods" && ev.ResponseStatus.Code == 200 {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no audit event of alice listing pods through the gateway")
	if t.Failed() {
		data, _ := os.ReadFile(c.AuditLog)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "alice") {
				t.Log(line)
			}
		}
	}
}

// processesIn lists the processes whose command line names dir or whose working directory is
// in it, but for kubectl's (the test's clients, not the cluster's).
func processesIn(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
		if stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); bytes.Contains(stat, []byte(") Z ")) {
			continue // exited, not yet reaped
		}
		if bytes.Contains(cmdline, []byte("--kubeconfig=")) {
			continue
		}
		if bytes.Contains(cmdline, []byte(dir)) || cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			out = append(out, e.Name()+": "+strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return out
}
