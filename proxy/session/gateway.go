package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/services/bus"
)

// A gateway process says it is alive: every proxy process has a boot id, names it in the
// session.start of every session it serves, and keeps a key of that name in KV bucket
// gh_gateways fresh. A process that dies without ending its sessions (kill -9, a crash, a
// lost machine) stops refreshing it; the key lapses after the bucket's MaxAge, and the
// sweeper (ingest) ends the sessions it left as gateway_lost. A process that starts again
// on the same data directory removes its previous boot's key at once.

// Gateway is this process's entry in gh_gateways.
type Gateway struct {
	ID string

	kv       jetstream.KeyValue
	every    time.Duration
	bootFile string
	log      *slog.Logger
	info     bus.GatewayInfo
}

// StartGateway registers this process with a new boot id, refreshed every timeout/4.
// dataDir, when set, remembers the boot id: the next start there removes it (its sessions
// are then ended without waiting for the key to lapse).
func StartGateway(ctx context.Context, js jetstream.JetStream, timeout time.Duration, dataDir string, log *slog.Logger) (*Gateway, error) {
	kv, err := bus.OpenGateways(ctx, js, timeout)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	g := &Gateway{ID: uuid.NewString(), kv: kv, every: max(timeout/4, 100*time.Millisecond), log: log,
		info: bus.GatewayInfo{Started: time.Now().UTC(), Host: host, PID: os.Getpid()}}
	if dataDir != "" {
		g.bootFile = filepath.Join(dataDir, "gateway.boot")
		if prev, err := os.ReadFile(g.bootFile); err == nil {
			if id := strings.TrimSpace(string(prev)); id != "" {
				if err := kv.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					log.Warn("cannot remove the previous boot's gateway key", "gateway", id, "err", err)
				} else {
					log.Info("the previous boot of this gateway is gone; its open sessions will be ended as gateway_lost", "gateway", id)
				}
			}
		}
		if err := os.WriteFile(g.bootFile, []byte(g.ID+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("gateway boot file: %w", err)
		}
	}
	if err := g.beat(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Gateway) beat(ctx context.Context) error {
	b, _ := json.Marshal(g.info)
	if _, err := g.kv.Put(ctx, g.ID, b); err != nil {
		return fmt.Errorf("gateway heartbeat: %w", err)
	}
	return nil
}

// Run refreshes the key until ctx ends. After a failed refresh (NATS unreachable) it tries
// again every 250 ms, so that a gateway whose link returns says it is alive before the
// sweeper takes the events its spool now publishes for a dead gateway's.
func (g *Gateway) Run(ctx context.Context) {
	wait, failing := g.every, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := g.beat(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				g.log.Warn("gateway heartbeat failed; retrying", "err", err)
			}
			wait, failing = min(g.every, 250*time.Millisecond), true
		default:
			if failing {
				g.log.Info("gateway heartbeat restored")
			}
			wait, failing = g.every, false
		}
	}
}

// Stop removes the key: the process has ended its sessions itself.
func (g *Gateway) Stop(ctx context.Context) {
	if err := g.kv.Purge(ctx, g.ID); err != nil {
		g.log.Warn("cannot remove the gateway key", "err", err)
	}
	if g.bootFile != "" {
		_ = os.Remove(g.bootFile)
	}
}
