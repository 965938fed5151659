// Package kubetest starts localkube's Kubernetes cluster for a test: built once per test
// process (or taken from the cache that `make kube-fixture` fills), started in the test's
// temporary directory, stopped when the test ends.
package kubetest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/localkube"
)

var (
	buildOnce sync.Once
	bins      *localkube.Binaries
	buildErr  error
	buildLog  bytes.Buffer
)

// Binaries builds the cluster's binaries once per test process, or finds them in the cache.
// A cold build takes many minutes: run `make kube-fixture` first or give go test a long
// -timeout. The test is skipped only when the build is impossible here (no Go module
// proxy, localkube.ErrUnavailable); any other failure fails it.
func Binaries(t testing.TB) *localkube.Binaries {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
		defer cancel()
		bins, buildErr = localkube.Build(ctx, &buildLog)
	})
	if errors.Is(buildErr, localkube.ErrUnavailable) {
		t.Skipf("cannot build the Kubernetes fixture: %v", buildErr)
	}
	if buildErr != nil {
		t.Fatalf("build the Kubernetes fixture: %v\n%s", buildErr, buildLog.String())
	}
	return bins
}

// Start starts a cluster in a fresh temporary directory and stops it when the test ends.
// When the test has failed by then, the end of each server's log is logged.
func Start(t testing.TB) *localkube.Cluster {
	t.Helper()
	return StartWith(t, localkube.Options{})
}

// StartWith is Start with options; Binaries defaults to Binaries(t).
func StartWith(t testing.TB, opts localkube.Options) *localkube.Cluster {
	t.Helper()
	if opts.Binaries == nil {
		opts.Binaries = Binaries(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := localkube.Start(ctx, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start the Kubernetes fixture: %v", err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, f := range []string{c.APIServerLog, c.KubeletLog, c.EtcdLog} {
				data, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", filepath.Base(f), tail(string(data), 40))
			}
		}
	})
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kubectl runs the cluster's kubectl with kubeconfig (c.AdminKubeconfig, say) and stdin,
// for at most two minutes. It returns the standard output; on failure the error is a
// *KubectlError, which holds the standard error and unwraps to the *exec.ExitError.
func Kubectl(t testing.TB, c *localkube.Cluster, kubeconfig, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binaries.Kubectl, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &KubectlError{Args: args, Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// KubectlError is a kubectl run that failed.
type KubectlError struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *KubectlError) Error() string {
	return "kubectl " + strings.Join(e.Args, " ") + ": " + e.Err.Error() + ": " + strings.TrimSpace(e.Stderr)
}

func (e *KubectlError) Unwrap() error { return e.Err }

// Admin runs kubectl as the admin and fails the test if it fails.
func Admin(t testing.TB, c *localkube.Cluster, stdin string, args ...string) string {
	t.Helper()
	out, err := Kubectl(t, c, c.AdminKubeconfig, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
