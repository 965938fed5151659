// Command gatehouse is the Gatehouse access gateway: one binary that runs any subset of its
// components (`gatehouse run --target=...`), the local trial (`gatehouse dev`), and the CLI.
package main

import (
	"os"

	"github.com/gatehouse/gatehouse/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
