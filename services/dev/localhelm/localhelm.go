// Package localhelm builds (once, into a cache outside the repository) the Helm command the
// chart's tests render and lint deploy/helm/gatehouse with. Debian has no Helm package, so it
// is built from the Go module proxy, as localkube builds Kubernetes.
package localhelm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Version is the Helm release built.
const (
	Module  = "helm.sh/helm/v4"
	Version = "v4.3.2"
)

// ErrUnavailable says Helm cannot be built here because the Go module proxy cannot be
// reached. It is the only Build error a test should skip on.
var ErrUnavailable = errors.New("localhelm: cannot build Helm here")

// CacheDir is where Build keeps helm: $GATEHOUSE_CACHE/helm/<Version>, or
// $HOME/.cache/gatehouse/helm/<Version>.
func CacheDir() (string, error) {
	root := os.Getenv("GATEHOUSE_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache directory: %w", err)
		}
		root = filepath.Join(home, ".cache", "gatehouse")
	}
	return filepath.Abs(filepath.Join(root, "helm", Version))
}

// Build returns the path of helm, building it when the cache lacks it (a few minutes of
// CPU, once). The go command's output goes to log.
func Build(ctx context.Context, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: no go command in PATH", ErrUnavailable)
	}
	if err := reachable(ctx, goBin); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	// Into a directory of its own first, so that a cancelled build leaves no half binary,
	// and concurrent builds do not write the same file.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	fmt.Fprintf(log, "localhelm: go install %s/cmd/helm@%s into %s\n", Module, Version, dir)
	cmd := exec.CommandContext(ctx, goBin, "install", "-trimpath", Module+"/cmd/helm@"+Version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=-mod=mod", "GO111MODULE=on", "GOMAXPROCS=2")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, log), io.MultiWriter(&out, log)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s/cmd/helm@%s: %w\n%s", Module, Version, err, lastLines(out.String(), 30))
	}
	if err := os.Rename(filepath.Join(tmp, "helm"), bin); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "localhelm: built helm %s in %s\n", Version, time.Since(start).Round(time.Second))
	return bin, nil
}

// reachable asks the first module proxy of GOPROXY for the Helm release: only a proxy that
// cannot be reached (or GOPROXY=off) is ErrUnavailable; any answer but 200 is an error.
func reachable(ctx context.Context, goBin string) error {
	out, err := exec.CommandContext(ctx, goBin, "env", "GOPROXY").Output()
	if err != nil {
		return fmt.Errorf("%w: go env GOPROXY: %v", ErrUnavailable, err)
	}
	proxy, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	proxy, _, _ = strings.Cut(proxy, "|")
	switch proxy {
	case "off", "":
		return fmt.Errorf("%w: GOPROXY=%s", ErrUnavailable, proxy)
	case "direct":
		return nil // no proxy to ask; go install says what it finds
	}
	u := strings.TrimRight(proxy, "/") + "/" + Module + "/@v/" + Version + ".info"
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: GOPROXY=%s: %v", ErrUnavailable, proxy, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: the Go module proxy cannot be reached: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("module proxy %s: %s@%s: %s", proxy, Module, Version, resp.Status)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
