// Command schemagen renders events_gen.go and EVENTS.md from events.yaml, and
// messages_gen.go and MESSAGES.md from messages.yaml.
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
	events, err := os.ReadFile("events.yaml")
	if err != nil {
		return err
	}
	messages, err := os.ReadFile("messages.yaml")
	if err != nil {
		return err
	}
	ev, msg, err := schemagen.Load(events, messages)
	if err != nil {
		return err
	}
	code, err := schemagen.RenderGo(ev)
	if err != nil {
		return err
	}
	msgCode, err := schemagen.RenderMessagesGo(msg)
	if err != nil {
		return err
	}
	for file, data := range map[string][]byte{"events_gen.go": code, "EVENTS.md": schemagen.RenderMarkdown(ev),
		"messages_gen.go": msgCode, "MESSAGES.md": schemagen.RenderMessagesMarkdown(msg)} {
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
