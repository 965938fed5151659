package app

import (
	"context"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/approvals/grants"
	"github.com/gatehouse/gatehouse/revoke"
)

// approvalsService keeps the approvals' state (from GH_APPROVALS), serves the approvals API
// and expires what passes its deadline.
func (a *App) approvalsService() *Service {
	svc := &approvals.Service{}
	return &Service{
		Start: func(ctx context.Context) error {
			svc.JS, svc.NC, svc.Verifier, svc.Log = a.bus.JS, a.bus.NC, a.verifier, a.component("approvals")
			svc.Config, svc.Admins, svc.Auditors = a.cfg, a.cfg.Query.AdminGroups, a.cfg.Query.AuditorGroups
			gs, err := grants.Open(ctx, a.bus.JS)
			if err != nil {
				return err
			}
			svc.Grants = gs
			if err := svc.Start(ctx); err != nil {
				return err
			}
			if _, err := revoke.Follow(ctx, a.bus.JS, a.component("approvals"), svc.RevokeGrant); err != nil {
				return err
			}
			svc.Register(a.echo)
			a.approvals = svc
			return nil
		},
		Run: func(ctx context.Context) error {
			return svc.Run(ctx)
		},
	}
}
