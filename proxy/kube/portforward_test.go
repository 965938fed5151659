// kubectl's SPDY/3.1 streams (exec, port-forward) and port-forward over WebSocket through
// the gateway, against the real kube-apiserver, kubectl and the fake kubelet (which
// forwards a pod's port to 127.0.0.1:PORT).

package kube_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localkube/kubetest"
)

// spdyExec and spdyPortForward make kubectl stream over SPDY/3.1 rather than WebSocket.
const (
	spdyExec        = "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"
	spdyPortForward = "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"
)

// kubectlEnv is env.kubectl with variables added to kubectl's environment.
func (e *env) kubectlEnv(t *testing.T, vars []string, token, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := e.kubectlCmd(t, vars, token, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &kubetest.KubectlError{Args: args, Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

func (e *env) kubectlCmd(t *testing.T, vars []string, token string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, e.cluster.Binaries.Kubectl, append([]string{"--kubeconfig=" + e.kubeconfig(token)}, args...)...)
	cmd.Env = append(os.Environ(), vars...)
	return cmd
}

// TestExecOverSPDY: kubectl exec over SPDY/3.1 is decided, relayed and recorded as over
// WebSocket: the output as terminal frames, stdin without a terminal by its hash, the exit.
func TestExecOverSPDY(t *testing.T) {
	e := start(t)
	vars := []string{spdyExec}
	out, err := e.kubectlEnv(t, vars, e.token, "", "exec", "shell", "-c", "main", "--", "echo", "hi")
	require.NoError(t, err)
	require.Equal(t, "hi\n", out)
	out, err = e.kubectlEnv(t, vars, e.token, "secret input\n", "exec", "-i", "shell", "-c", "main", "--", "cat")
	require.NoError(t, err)
	require.Equal(t, "secret input\n", out)
	_, err = e.kubectlEnv(t, vars, e.token, "", "exec", "shell", "-c", "main", "--", "sh", "-c", "id")
	require.Error(t, err)
	require.Contains(t, err.Error(), "no shells in production")

	evs := e.events(t, "prod-cluster", func(evs []schemas.Event) bool {
		n := 0
		for _, d := range ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone) {
			if d.Exit != "" {
				n++
			}
		}
		return n >= 2
	})
	spdy := 0
	for _, r := range ofType[schemas.HttpRequest](t, evs, schemas.TypeHttpRequest) {
		for _, h := range r.Headers {
			if strings.EqualFold(h, "upgrade: SPDY/3.1") {
				spdy++
			}
		}
	}
	require.GreaterOrEqual(t, spdy, 3, "kubectl spoke SPDY")
	for _, d := range ofType[schemas.HttpDone](t, evs, schemas.TypeHttpDone) {
		if d.Exit != "" {
			require.Equal(t, "Success", d.Exit)
		}
	}
	var text strings.Builder
	var stdinHash []string
	for _, io := range ofType[schemas.KubeIo](t, evs, schemas.TypeKubeIo) {
		for _, f := range io.Frames {
			text.WriteString(f.Code + ":" + f.Data)
		}
		if io.StdinSha256 != "" {
			stdinHash = append(stdinHash, io.StdinSha256)
		}
	}
	require.Contains(t, text.String(), "o:hi")
	require.Contains(t, text.String(), "o:secret input")
	sum := sha256.Sum256([]byte("secret input\n"))
	require.Equal(t, []string{hex.EncodeToString(sum[:])}, stdinHash, "stdin without a terminal is recorded by its hash")
	require.NotContains(t, text.String(), "i:secret input", "and not in clear")
}

// echoServer is a TCP echo server on loopback: the pod's port the fake kubelet forwards to.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

var forwardingFrom = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)

// portForward runs kubectl port-forward to the pod's port, local port chosen by kubectl,
// and returns the local port once kubectl listens on it, or kubectl's error output when it
// exits first.
func (e *env) portForward(t *testing.T, vars []string, port int) (int, string) {
	t.Helper()
	cmd := e.kubectlCmd(t, vars, e.token, "port-forward", "pod/shell", ":"+strconv.Itoa(port), "--address=127.0.0.1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	local := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwardingFrom.FindStringSubmatch(sc.Text()); m != nil {
				p, _ := strconv.Atoi(m[1])
				select {
				case local <- p:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case p := <-local:
		return p, ""
	case <-exited:
		return 0, stderr.String()
	case <-time.After(time.Minute):
		t.Fatal("kubectl port-forward neither listened nor exited")
		return 0, ""
	}
}

// roundTrip sends msg through the forwarded local port and reads the echo.
func roundTrip(t *testing.T, local int, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(local), 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	return string(buf)
}

var portForwardPolicies = []config.Policy{{Name: "cluster", Resources: []string{"prod-cluster"},
	Rules: append(append([]config.Rule{}, kubePolicies[0].Rules...),
		config.Rule{Name: "port-forward", Effect: "allow", When: `request.kube.subresource == "portforward"`})}}

// TestPortForward: a rule allows port-forward; kubectl forwards bytes through the gateway
// over WebSocket (its default) and over SPDY/3.1, the SPDY connections recorded by port and
// byte counts.
func TestPortForward(t *testing.T) {
	e := startWith(t, portForwardPolicies)
	port := echoServer(t)
	for _, tc := range []struct {
		name string
		vars []string
	}{{"websocket", nil}, {"spdy", []string{spdyPortForward}}} {
		t.Run(tc.name, func(t *testing.T) {
			local, stderr := e.portForward(t, tc.vars, port)
			require.NotZero(t, local, "kubectl port-forward failed: %s", stderr)
			for i := range 3 {
				msg := strings.Repeat("ping "+tc.name+" "+strconv.Itoa(i)+" ", 1000)
				require.Equal(t, msg, roundTrip(t, local, msg))
			}
		})
	}
	want := fmt.Sprintf("port %d data stream: 12000 bytes from the client, 12000 from the server", port)
	e.events(t, "prod-cluster", func(evs []schemas.Event) bool {
		for _, ws := range ofType[schemas.HttpWs](t, evs, schemas.TypeHttpWs) {
			for _, f := range ws.Frames {
				if f.Data == want {
					return true
				}
			}
		}
		return false
	})
}

// TestPortForwardRefused: without a rule that allows it, port-forward is refused over
// either protocol.
func TestPortForwardRefused(t *testing.T) {
	e := start(t)
	port := echoServer(t)
	for _, vars := range [][]string{nil, {spdyPortForward}} {
		local, stderr := e.portForward(t, vars, port)
		require.Zero(t, local, "%v", vars)
		require.Contains(t, stderr, "no rule allows create of pods/shell/portforward", "%v", vars)
	}
}
