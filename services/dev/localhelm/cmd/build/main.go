// Command build builds (or finds in the cache) the Helm command the chart's tests use.
// `make helm-fixture` runs it, so that a test run starts from a warm cache.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehouse/gatehouse/services/dev/localhelm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := localhelm.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
