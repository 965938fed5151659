package app

import (
	"context"

	"github.com/gatehouse/gatehouse/services/approvals"
)

// approvalsService keeps the approvals' state (from GH_APPROVALS), serves the approvals API
// and expires what passes its deadline.
func (a *App) approvalsService() *Service {
	svc := &approvals.Service{}
	return &Service{
		Start: func(ctx context.Context) error {
			svc.JS, svc.NC, svc.Verifier, svc.Log = a.bus.JS, a.bus.NC, a.verifier, a.component("approvals")
			if err := svc.Start(ctx); err != nil {
				return err
			}
			svc.Register(a.echo)
			a.approvals = svc
			return nil
		},
		Run: svc.Run,
	}
}
