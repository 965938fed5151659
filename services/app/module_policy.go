package app

import (
	"context"
	"errors"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/desired"
	"github.com/gatehouse/gatehouse/services/policy"
	"github.com/gatehouse/gatehouse/services/revoke"
)

// policyService answers decisions with the policies in KV, recompiling on every change, and
// serves the policy and resource API.
func (a *App) policyService() *Service {
	var svc *policy.Service
	log := a.component("policy")
	return &Service{
		Start: func(ctx context.Context) error {
			ps, err := a.desired.Policies(ctx)
			if err != nil {
				return err
			}
			eng, err := policy.Compile(ps, policy.RevisionOf(ps))
			if err != nil {
				return err
			}
			svc = policy.NewService(a.bus.NC, eng, a.reg, log)
			(&desired.API{Store: a.desired, JS: a.bus.JS, Verifier: a.verifier, Admins: a.cfg.Query.AdminGroups, Base: a.cfg}).Register(a.echo)
			reg, err := revoke.Follow(ctx, a.bus.JS, log, nil)
			if err != nil {
				return err
			}
			(&revoke.API{JS: a.bus.JS, Registry: reg, Verifier: a.verifier, Admins: a.cfg.Query.AdminGroups}).Register(a.echo)
			return svc.Start(ctx)
		},
		Run: func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() {
				errc <- a.desired.WatchPolicies(ctx, func(ps []config.Policy) {
					rev := policy.RevisionOf(ps)
					if rev == svc.Revision() {
						return
					}
					eng, err := policy.Compile(ps, rev)
					if err != nil {
						// The API refuses such a set; only a direct KV write gets here.
						log.Error("policies in KV do not compile; the running policies stay in force", "err", err)
						return
					}
					svc.SetEngine(eng)
					log.Info("policies changed", "revision", rev, "policies", len(ps))
				})
			}()
			err := svc.Announce(ctx)
			return errors.Join(err, <-errc)
		},
		Stop: func(ctx context.Context) error { return svc.Stop(ctx) },
	}
}
