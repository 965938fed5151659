package config

import (
	"strings"
	"time"
)

// NATS says where the bus is. An empty URL means: run NATS embedded in this process.
type NATS struct {
	URL string `yaml:"url"`
	// EmbeddedListen is the client address of the embedded server (port 0 = any free port).
	EmbeddedListen string `yaml:"embedded_listen"`
	// StreamMaxBytes bounds GH_AUDIT (limits-based retention).
	StreamMaxBytes int64 `yaml:"stream_max_bytes"`
	// DuplicateWindow is JetStream's deduplication window for re-published events (default
	// 2m, NATS's own). The server keeps every message ID of the window in memory, so its
	// size is the publish rate times the window; a copy stored after it is harmless (the
	// audit store keeps one event per ID).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
}

func (n *NATS) applyDefaults() {
	def(&n.EmbeddedListen, "127.0.0.1:0")
	def(&n.StreamMaxBytes, 8<<30)
	def(&n.DuplicateWindow, 2*time.Minute)
}

func (n *NATS) validate(path string, ck *checker) {
	if n.URL == "" {
		ck.hostPort(path+".embedded_listen", n.EmbeddedListen)
	} else if !strings.Contains(n.URL, "://") {
		ck.add(path+".url", "%q is not a URL (nats://host:port)", n.URL)
	}
}
