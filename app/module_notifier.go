package app

import (
	"context"

	"github.com/gatehouse/gatehouse/notifier"
)

// notifierService posts approvals to Slack and takes decisions from it. It meets the
// approvals component only over NATS (GH_APPROVALS, gh.approvals-decide), so it runs in a
// process of its own or beside it.
func (a *App) notifierService() *Service {
	var n *notifier.Notifier
	return &Service{
		Start: func(ctx context.Context) error {
			if a.cfg.Slack == nil {
				a.component("notifier").Info("no slack: in the config; the notifier has nothing to do")
				return nil
			}
			var err error
			if n, err = notifier.New(a.cfg.Slack, a.bus.NC, a.bus.JS, a.component("notifier")); err != nil {
				return err
			}
			n.Register(a.echo)
			return nil
		},
		Run: func(ctx context.Context) error {
			if n == nil {
				<-ctx.Done() // a service stops only with the process
				return nil
			}
			go func() { _ = n.Run(ctx) }()
			return n.Follow(ctx)
		},
	}
}
