package app

import (
	"context"
	"slices"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/desired"
)

// desiredService opens the desired-state KV buckets, seeds them from the config file, and
// keeps the live resources current.
func (a *App) desiredService() *Service {
	return &Service{
		Start: func(ctx context.Context) error {
			st, err := desired.Open(ctx, a.bus.JS, a.component("desired"))
			if err != nil {
				return err
			}
			// The config file's policies and resources are seeded by every process in a
			// trial; with least-privilege credentials (nats.streams: bind) by the policy
			// service alone, their owner: a proxy may read desired state, never write it.
			if a.cfg.NATS.Streams != config.StreamsBind || slices.Contains(a.running, "policy") {
				if err := a.seedDesired(ctx, st); err != nil {
					return err
				}
			}
			rs, err := st.Resources(ctx)
			if err != nil {
				return err
			}
			a.desired = st
			a.resources = desired.NewLiveResources(rs)
			return nil
		},
		Run: func(ctx context.Context) error {
			return a.desired.WatchResources(ctx, a.resources.Set)
		},
	}
}

// seedDesired puts the config file's policies and resources into KV and records each
// change.
func (a *App) seedDesired(ctx context.Context, st *desired.Store) error {
	changes, err := st.Seed(ctx, a.cfg, a.cfg.SeedOverwrite)
	if err != nil {
		return err
	}
	who := schemas.Identity{Subject: "config-file", Kind: "system"}
	for _, c := range changes {
		if err := desired.Record(ctx, a.bus.JS, c, who, "config", 0); err != nil {
			return err
		}
	}
	return nil
}
