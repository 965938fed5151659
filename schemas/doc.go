// Package schemas is the Gatehouse event contract: the envelope every event shares, the
// event types with their stable codes, and their payloads. events.yaml is the single source
// of truth; events_gen.go and EVENTS.md are generated from it.
package schemas

//go:generate go run ./cmd/schemagen
