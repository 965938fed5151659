package app

import (
	"context"

	"github.com/gatehouse/gatehouse/services/approvals"
	"github.com/gatehouse/gatehouse/services/grants"
	"github.com/gatehouse/gatehouse/services/revoke"
	"github.com/gatehouse/gatehouse/services/slack"
)

// approvalsService keeps the approvals' state (from GH_APPROVALS), serves the approvals API
// and expires what passes its deadline.
func (a *App) approvalsService() *Service {
	svc := &approvals.Service{}
	var notifier *slack.Notifier
	return &Service{
		Start: func(ctx context.Context) error {
			svc.JS, svc.NC, svc.Verifier, svc.Log = a.bus.JS, a.bus.NC, a.verifier, a.component("approvals")
			svc.Config, svc.Admins, svc.Auditors = a.cfg, a.cfg.Query.AdminGroups, a.cfg.Query.AuditorGroups
			gs, err := grants.Open(ctx, a.bus.JS)
			if err != nil {
				return err
			}
			svc.Grants = gs
			if a.cfg.Slack != nil {
				if notifier, err = slack.New(a.cfg.Slack, svc, a.component("slack")); err != nil {
					return err
				}
				svc.OnChange = notifier.OnChange
				notifier.Register(a.echo)
			}
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
			if notifier != nil {
				go func() { _ = notifier.Run(ctx) }()
			}
			return svc.Run(ctx)
		},
	}
}
