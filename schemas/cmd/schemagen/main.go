// Command schemagen renders events_gen.go and EVENTS.md from events.yaml.
package main

import (
	"fmt"
	"os"

	"github.com/gatehouse/gatehouse/schemas/internal/schemagen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run() error {
	src, err := os.ReadFile("events.yaml")
	if err != nil {
		return err
	}
	s, err := schemagen.Parse(src)
	if err != nil {
		return err
	}
	code, err := schemagen.RenderGo(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile("events_gen.go", code, 0o644); err != nil {
		return err
	}
	return os.WriteFile("EVENTS.md", schemagen.RenderMarkdown(s), 0o644)
}
