// Package schemas is the Gatehouse contract: the envelope every event shares, the event
// types with their stable codes, and their payloads (events.yaml); and every other message
// that crosses NATS, with the names it crosses on (messages.yaml: the decision request and
// reply, mask and approval specs, subjects, headers, limits). The YAML files are the single
// source of truth; events_gen.go, EVENTS.md, messages_gen.go and MESSAGES.md are generated
// from them.
package schemas

//go:generate go run ./cmd/schemagen
