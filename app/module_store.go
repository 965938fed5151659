package app

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/query"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/seal"
)

func (a *App) clickhouseService() *Service {
	return &Service{
		Start: func(ctx context.Context) error {
			ch, err := ingest.Open(a.cfg.ClickHouse)
			if err != nil {
				return err
			}
			a.ch = ch
			return nil
		},
		Stop: func(context.Context) error { return a.ch.Close() },
	}
}

func (a *App) ingestService() *Service {
	var in *ingest.Ingester
	var ret *ingest.Retention
	var sweep *ingest.Sweeper
	return &Service{
		Start: func(ctx context.Context) error {
			in = ingest.New(ingest.Config{Database: a.cfg.ClickHouse.Database, Cluster: a.cfg.ClickHouse.Cluster, BatchSize: a.cfg.Ingest.BatchSize, FlushInterval: a.cfg.Ingest.FlushInterval},
				a.bus.JS, a.ch, a.reg, a.component("ingest"))
			if err := in.Start(ctx); err != nil {
				return err
			}
			ret = &ingest.Retention{Database: a.cfg.ClickHouse.Database, Cluster: a.cfg.ClickHouse.Cluster.Name, CH: a.ch, Config: a.cfg.Audit.Retention, Log: a.component("retention"),
				Labels: func(name string) (map[string]string, bool) {
					r, ok := a.resources.Resource(name)
					if !ok {
						return nil, false
					}
					return r.Labels, true
				},
				Record: func(ctx context.Context, e schemas.Event) error { return bus.RecordControl(ctx, a.bus.JS, e) },
				Claim: func(ctx context.Context, key string) (bool, error) {
					host, _ := os.Hostname()
					return bus.Claim(ctx, a.bus.JS, key, fmt.Sprintf("%s/%d", host, os.Getpid()))
				},
			}
			(&ingest.RetentionAPI{Retention: ret, Verifier: a.verifier, Admins: a.cfg.Query.AdminGroups}).Register(a.echo)
			gws, err := bus.OpenGateways(ctx, a.bus.JS, a.cfg.Audit.GatewayTimeout)
			if err != nil {
				return err
			}
			sweep = &ingest.Sweeper{CH: a.ch, Database: a.cfg.ClickHouse.Database, JS: a.bus.JS, Gateways: gws,
				Interval: a.cfg.Audit.SweepInterval, Log: a.component("sweeper")}
			if a.cfg.Audit.SigningKeyFile != "" {
				if sweep.Key, err = seal.LoadKey(a.cfg.Audit.SigningKeyFile, false); err != nil {
					return err
				}
			}
			if sweep.Keys, err = verifyKeys(a.cfg.Audit); err != nil {
				return err
			}
			return nil
		},
		Run: func(ctx context.Context) error {
			if a.cfg.Audit.Retention.Enabled() {
				go ret.Schedule(ctx, schemas.Identity{Subject: "gatehouse-retention", Kind: "system"})
			}
			if sweep.Interval > 0 {
				go sweep.Run(ctx)
			}
			return in.Run(ctx)
		},
	}
}

func (a *App) queryService() *Service {
	return &Service{Start: func(ctx context.Context) error {
		api := query.New(a.ch, a.cfg.ClickHouse.Database, a.verifier, a.cfg.Query.AuditorGroups, a.component("query"))
		keys, err := verifyKeys(a.cfg.Audit)
		if err != nil {
			return err
		}
		api.SetVerifyKeys(keys)
		gws, err := bus.OpenGateways(ctx, a.bus.JS, a.cfg.Audit.GatewayTimeout)
		if err != nil {
			return err
		}
		api.SetGatewayAlive(func(ctx context.Context, id string) (bool, error) { return bus.Alive(ctx, gws, id) })
		api.SetInserted(func(ctx context.Context) (uint64, error) {
			cons, err := a.bus.JS.Consumer(ctx, bus.StreamAudit, ingest.ConsumerName)
			if err != nil {
				return 0, err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.AckFloor.Stream, nil
		})
		api.Register(a.echo)
		return a.registerConsole()
	}}
}

// verifyKeys are the public keys whose seals verify: the signing key's, and the listed ones.
func verifyKeys(c config.Audit) (map[string]ed25519.PublicKey, error) {
	keys := map[string]ed25519.PublicKey{}
	if c.SigningKeyFile != "" {
		k, err := seal.LoadKey(c.SigningKeyFile, false)
		if err != nil {
			return nil, err
		}
		keys[k.ID] = k.Private.Public().(ed25519.PublicKey)
	}
	for i, s := range c.VerifyKeys {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("audit.verify_keys[%d]: want the base64 of a %d-byte Ed25519 public key", i, ed25519.PublicKeySize)
		}
		keys[seal.KeyID(b)] = b
	}
	return keys, nil
}
