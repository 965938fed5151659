package localkube

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Versions built. Every k8s.io module is kept at the one release that matches KubeVersion.
const (
	KubeVersion    = "v1.37.2"
	stagingVersion = "v0.37.2"
	// EtcdVersion is the etcd server built; Kubernetes 1.37 is built against etcd 3.7.
	EtcdVersion = "v3.7.3"
	// ptyVersion is the creack/pty the fake kubelet uses, the one the main module uses.
	ptyVersion = "v1.1.24"
)

// ErrUnavailable says the binaries cannot be built here because the Go toolchain or the Go
// module proxy cannot be reached. It is the only Build error a test should skip on.
var ErrUnavailable = errors.New("localkube: cannot build Kubernetes here")

//go:embed fakekubelet.go.txt
var fakeKubeletSource []byte

// Binaries are the programs a cluster runs, from the build cache.
type Binaries struct {
	Dir       string // the cache directory, $GATEHOUSE_CACHE/kube/<KubeVersion>
	APIServer string // kube-apiserver
	Etcd      string
	Kubectl   string // the installed kubectl when there is one, else one built from KubeVersion
	Kubelet   string // the fake kubelet (fakekubelet.go.txt)
	// BuildDuration is how long building the cached binaries took, summed over the builds
	// that made them (whenever they ran); Built says whether this call built any of them.
	BuildDuration time.Duration
	Built         bool
}

// manifest is the cache's record of what was built and how long it took.
type manifest struct {
	KubeVersion string            `json:"kubeVersion"`
	EtcdVersion string            `json:"etcdVersion"`
	Durations   map[string]string `json:"durations"` // by build step, as time.Duration prints
	// Recipes says how each step's binaries were built; a step whose recipe has changed
	// since (another version, other flags) is built again.
	Recipes map[string]string `json:"recipes"`
}

// CacheDir is where Build keeps its binaries: $GATEHOUSE_CACHE/kube/<KubeVersion>, or
// $HOME/.cache/gatehouse/kube/<KubeVersion> (outside the repository either way).
func CacheDir() (string, error) {
	root := os.Getenv("GATEHOUSE_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache directory: %w", err)
		}
		root = filepath.Join(home, ".cache", "gatehouse")
	}
	return filepath.Abs(filepath.Join(root, "kube", KubeVersion))
}

// Build returns kube-apiserver, etcd, kubectl and the fake kubelet, building what the cache
// lacks. A build takes minutes of CPU (kube-apiserver is most of it); it runs once per cache
// directory, under a file lock, so concurrent test processes wait for one build and share it.
// Build progress and the go command's output go to log. The builds use only the Go module
// proxy, each in a throwaway module in a temporary directory.
func Build(ctx context.Context, log io.Writer) (*Binaries, error) {
	if log == nil {
		log = io.Discard
	}
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	m := readManifest(dir)
	b := &Binaries{
		Dir:       dir,
		APIServer: filepath.Join(dir, "kube-apiserver"),
		Etcd:      filepath.Join(dir, "etcd"),
		Kubectl:   filepath.Join(dir, "kubectl"),
		// The kubelet's name carries its source's hash, so an edited source is rebuilt.
		Kubelet: filepath.Join(dir, "fake-kubelet-"+sourceHash()),
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		b.Kubectl = p
	}

	type buildStep struct {
		name, recipe string
		run          func(*goCmd) error
	}
	var steps []buildStep
	stale := func(name, recipe string) bool { return m.Recipes[name] != recipe }
	if missing(b.APIServer) || (b.Kubectl == filepath.Join(dir, "kubectl") && missing(b.Kubectl)) || stale("kube-apiserver", kubeRecipe()) {
		steps = append(steps, buildStep{"kube-apiserver", kubeRecipe(), func(g *goCmd) error { return buildKubernetes(ctx, g, b) }})
	}
	if missing(b.Etcd) || stale("etcd", etcdRecipe()) {
		steps = append(steps, buildStep{"etcd", etcdRecipe(), func(g *goCmd) error { return buildEtcd(ctx, g, b.Etcd) }})
	}
	if missing(b.Kubelet) || stale(filepath.Base(b.Kubelet), kubeletRecipe()) {
		steps = append(steps, buildStep{filepath.Base(b.Kubelet), kubeletRecipe(), func(g *goCmd) error { return buildKubelet(ctx, g, b.Kubelet) }})
	}
	if len(steps) > 0 {
		g, err := newGoCmd(log)
		if err != nil {
			return nil, err
		}
		for _, s := range steps {
			start := time.Now()
			fmt.Fprintf(log, "localkube: building %s into %s\n", s.name, dir)
			if err := s.run(g); err != nil {
				return nil, fmt.Errorf("build %s: %w", s.name, err)
			}
			took := time.Since(start).Round(time.Second)
			m.Durations[s.name] = took.String()
			m.Recipes[s.name] = s.recipe
			fmt.Fprintf(log, "localkube: built %s in %s\n", s.name, took)
		}
		b.Built = true
		// Kubelets built from other sources (other checkouts) are dropped, with their
		// records; a checkout that still wants one builds it again, in a second.
		old, _ := filepath.Glob(filepath.Join(dir, "fake-kubelet-*"))
		for _, f := range old {
			if name := filepath.Base(f); f != b.Kubelet && !strings.HasSuffix(f, ".tmp") {
				os.Remove(f)
				delete(m.Durations, name)
				delete(m.Recipes, name)
			}
		}
		if err := writeManifest(dir, m); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"kube-apiserver", "etcd", filepath.Base(b.Kubelet)} {
		d, _ := time.ParseDuration(m.Durations[name])
		b.BuildDuration += d
	}
	return b, nil
}

func missing(path string) bool {
	st, err := os.Stat(path)
	return err != nil || st.IsDir() || st.Mode()&0o111 == 0
}

func sourceHash() string {
	return digest(stagingVersion + ptyVersion + string(fakeKubeletSource))
}

func readManifest(dir string) manifest {
	m := manifest{KubeVersion: KubeVersion, EtcdVersion: EtcdVersion, Durations: map[string]string{}}
	if data, err := os.ReadFile(filepath.Join(dir, "build.json")); err == nil {
		_ = json.Unmarshal(data, &m)
	}
	if m.Durations == nil {
		m.Durations = map[string]string{}
	}
	if m.Recipes == nil {
		m.Recipes = map[string]string{}
	}
	return m
}

func writeManifest(dir string, m manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "build.json"), append(data, '\n'), 0o644)
}

// lockFile takes an exclusive flock on path, waiting (while ctx lasts) for another process's
// build to end.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("build lock %s: %w", path, err)
		}
		return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
	case <-ctx.Done():
		// Closing the file ends the lock if the flock call gets it after all.
		go func() { <-locked; f.Close() }()
		return nil, fmt.Errorf("wait for the build lock %s: %w", path, ctx.Err())
	}
}

// goCmd runs the go command for the builds: niced, two CPUs at most, modules from the
// proxy, no workspace.
type goCmd struct {
	goBin string
	nice  string // empty when nice is missing
	log   io.Writer
}

func newGoCmd(log io.Writer) (*goCmd, error) {
	g := &goCmd{log: log}
	var err error
	if g.goBin, err = exec.LookPath("go"); err != nil {
		g.goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if missing(g.goBin) {
			return nil, fmt.Errorf("%w: no go command in PATH or GOROOT", ErrUnavailable)
		}
	}
	if p, err := exec.LookPath("nice"); err == nil {
		g.nice = p
	}
	return g, nil
}

// run runs go with args in dir and returns its standard output; its standard error goes to
// the log, and into the error when it fails.
func (g *goCmd) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	name, argv := g.goBin, args
	if g.nice != "" {
		name, argv = g.nice, append([]string{"-n", "10", g.goBin}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOMAXPROCS=2", "GO111MODULE=on")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, g.log)
	// go and the compilers it runs are one process group, ended together on cancel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	fmt.Fprintf(g.log, "localkube: (in %s) go %s\n", dir, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		// go mod download -json reports its errors in the JSON, on stdout.
		msg := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		if unreachable(msg) {
			return nil, fmt.Errorf("%w: the Go module proxy cannot be reached (GOPROXY=%s): go %s: %s",
				ErrUnavailable, goEnv("GOPROXY"), strings.Join(args, " "), lastLines(msg, 5))
		}
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, lastLines(msg, 30))
	}
	return stdout.Bytes(), nil
}

// build compiles pkg in module dir to out (written whole or not at all).
func (g *goCmd) build(ctx context.Context, dir, pkg, out, ldflags string) error {
	tmp := out + ".tmp"
	if _, err := g.run(ctx, dir, "build", "-p", "2", "-trimpath", "-ldflags="+ldflags, "-o", tmp, pkg); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// unreachable tells a go command failure that comes from having no module proxy (no
// network, GOPROXY=off, a proxy that does not answer) from one that a build itself caused.
func unreachable(msg string) bool {
	for _, s := range []string{
		"dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable",
		"TLS handshake timeout", "proxyconnect", "module lookup disabled", "GOPROXY=off",
		"Temporary failure in name resolution", "server misbehaving", "connection reset by peer",
		"503 Service Unavailable", "502 Bad Gateway", "504 Gateway Timeout",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func goEnv(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildKubernetes builds kube-apiserver (and kubectl, when none is installed) in a throwaway
// module requiring k8s.io/kubernetes. That module's go.mod points its staging modules at
// v0.0.0 with replace directives to its own tree, which a dependent does not see; the
// throwaway module replaces each with the published release instead.
func buildKubernetes(ctx context.Context, g *goCmd, b *Binaries) error {
	tmp, err := os.MkdirTemp("", "localkube-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	out, err := g.run(ctx, tmp, "mod", "download", "-json", "k8s.io/kubernetes@"+KubeVersion)
	if err != nil {
		return err
	}
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &dl); err != nil {
		return fmt.Errorf("go mod download: %w", err)
	}
	if dl.Error != "" {
		return fmt.Errorf("go mod download k8s.io/kubernetes@%s: %s", KubeVersion, dl.Error)
	}
	kubeMod, err := os.ReadFile(dl.GoMod)
	if err != nil {
		return err
	}
	goVersion, staging := parseKubeGoMod(kubeMod)
	if len(staging) == 0 {
		return fmt.Errorf("no staging modules in k8s.io/kubernetes@%s's go.mod", KubeVersion)
	}
	var mod strings.Builder
	fmt.Fprintf(&mod, "module localkube.invalid/kubebuild\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", goVersion, KubeVersion)
	for _, m := range staging {
		fmt.Fprintf(&mod, "\t%s => %s %s\n", m, m, stagingVersion)
	}
	mod.WriteString(")\n")
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte(mod.String()), 0o644); err != nil {
		return err
	}
	if err := g.build(ctx, tmp, "k8s.io/kubernetes/cmd/kube-apiserver", b.APIServer, kubeLDFlags()); err != nil {
		return err
	}
	if b.Kubectl == filepath.Join(b.Dir, "kubectl") {
		return g.build(ctx, tmp, "k8s.io/kubernetes/cmd/kubectl", b.Kubectl, kubeLDFlags())
	}
	return nil
}

// kubeLDFlags strips the symbols and stamps the version, as Kubernetes' own build
// (hack/lib/version.sh) does: unstamped, the server calls itself v0.0.0-master, which
// clients that read /version (kubectl version, client-go's checks) cannot parse.
func kubeLDFlags() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubeVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	flags := "-s -w"
	for _, pkg := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
		flags += fmt.Sprintf(" -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=%[3]s -X %[1]s.gitMinor=%[4]s -X %[1]s.gitTreeState=clean",
			pkg, KubeVersion, major, minor)
	}
	return flags
}

func kubeRecipe() string    { return digest(KubeVersion + " " + stagingVersion + " " + kubeLDFlags()) }
func etcdRecipe() string    { return digest(EtcdVersion + " " + etcdMain) }
func kubeletRecipe() string { return sourceHash() }

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// parseKubeGoMod returns the go version of k8s.io/kubernetes's go.mod and the modules it
// replaces with its own staging tree.
func parseKubeGoMod(data []byte) (goVersion string, staging []string) {
	goVersion = "1.26.0"
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "go" {
			goVersion = f[1]
		}
		if f = strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "replace ")); len(f) == 3 && f[1] == "=>" && strings.HasPrefix(f[2], "./staging/") {
			staging = append(staging, f[0])
		}
	}
	return goVersion, staging
}

const etcdMain = `// Command etcd is etcd's server, built by localkube.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`

func buildEtcd(ctx context.Context, g *goCmd, out string) error {
	mod := "module localkube.invalid/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 " + EtcdVersion + "\n"
	return buildSmall(ctx, g, mod, etcdMain, out)
}

func buildKubelet(ctx context.Context, g *goCmd, out string) error {
	mod := fmt.Sprintf("module localkube.invalid/fakekubelet\n\ngo 1.26.0\n\nrequire (\n"+
		"\tgithub.com/creack/pty %s\n\tk8s.io/cri-streaming %s\n\tk8s.io/streaming %s\n)\n",
		ptyVersion, stagingVersion, stagingVersion)
	return buildSmall(ctx, g, mod, string(fakeKubeletSource), out)
}

// buildSmall builds a one-file program in a throwaway module.
func buildSmall(ctx context.Context, g *goCmd, goMod, mainGo, out string) error {
	tmp, err := os.MkdirTemp("", "localkube-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte(goMod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "main.go"), []byte(mainGo), 0o644); err != nil {
		return err
	}
	return g.build(ctx, tmp, ".", out, "-s -w")
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
