package app

import (
	"context"

	"github.com/gatehouse/gatehouse/services/policy"
)

func (a *App) policyService() *Service {
	var svc *policy.Service
	return &Service{
		Start: func(ctx context.Context) error {
			eng, err := policy.Compile(a.cfg.Policies, policy.RevisionOf(a.cfg.Policies))
			if err != nil {
				return err
			}
			svc = policy.NewService(a.bus.NC, eng, a.reg, a.component("policy"))
			return svc.Start(ctx)
		},
		Run:  func(ctx context.Context) error { return svc.Announce(ctx) },
		Stop: func(ctx context.Context) error { return svc.Stop(ctx) },
	}
}
