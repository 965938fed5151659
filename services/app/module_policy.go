package app

import (
	"context"

	"github.com/gatehouse/gatehouse/services/policy"
)

func (a *App) policyService() *Service {
	var svc *policy.Service
	return &Service{
		Start: func(ctx context.Context) error {
			// Config policies are revision 1 until policies move to KV.
			eng, err := policy.Compile(a.cfg.Policies, 1)
			if err != nil {
				return err
			}
			svc = policy.NewService(a.bus.NC, eng, a.reg, a.component("policy"))
			return svc.Start(ctx)
		},
		Run:  func(ctx context.Context) error { <-ctx.Done(); return nil },
		Stop: func(ctx context.Context) error { return svc.Stop(ctx) },
	}
}
