// Command build builds (or finds in the cache) the binaries localkube's test cluster runs:
// kube-apiserver, etcd, kubectl and the fake kubelet. `make kube-fixture` runs it, so that a
// test run starts from a warm cache. It prints where the binaries are, how long building
// them took and how much disk the cache uses.
package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/gatehouse/gatehouse/services/dev/localkube"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := localkube.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	fmt.Printf("kube-apiserver %s\netcd           %s\nkubectl        %s\nfake kubelet   %s\n", b.APIServer, b.Etcd, b.Kubectl, b.Kubelet)
	state := "from the cache"
	if b.Built {
		state = "built now"
	}
	fmt.Printf("build time     %s (%s)\ncache size     %.0f MiB in %s\n", b.BuildDuration, state, float64(dirSize(b.Dir))/(1<<20), b.Dir)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
