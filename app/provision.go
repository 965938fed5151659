package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gatehouse/gatehouse/approvals/grants"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/catalogs"
	"github.com/gatehouse/gatehouse/services/desired"
)

// Provision creates or updates every stream and KV bucket Gatehouse uses, with the
// config's replicas, on the NATS at nats.url, with the config's credentials (the
// provisioning user's): what `gatehouse nats provision` runs before the components start
// with nats.streams: bind. It goes through the same openers the components use, so what
// it makes is exactly what they would have made themselves.
func Provision(ctx context.Context, a *App) ([]string, error) {
	url := a.cfg.NATS.ServerURL()
	if url == "" {
		return nil, fmt.Errorf("nats.url is empty: there is nothing to provision (the embedded server makes its own streams)")
	}
	o := a.busOptions()
	o.Bind = false // this is the step that creates
	b, err := bus.Connect(ctx, url, "gatehouse-provision", o, a.component("provision"))
	if err != nil {
		return nil, err
	}
	defer b.Close()
	a.bus = b
	if err := bus.EnsureRevokeStream(ctx, b.JS); err != nil {
		return nil, err
	}
	if _, err := desired.Open(ctx, b.JS, slog.New(slog.DiscardHandler)); err != nil {
		return nil, err
	}
	if _, err := grants.Open(ctx, b.JS); err != nil {
		return nil, err
	}
	if _, err := catalogs.Open(ctx, b.JS); err != nil {
		return nil, err
	}
	if _, err := bus.OpenGateways(ctx, b.JS, a.cfg.Audit.GatewayTimeout); err != nil {
		return nil, err
	}
	if _, err := bus.OpenLocks(ctx, b.JS); err != nil {
		return nil, err
	}
	if _, _, err := a.openWebBuckets(ctx); err != nil {
		return nil, err
	}
	var made []string
	for name := range b.JS.StreamNames(ctx).Name() {
		made = append(made, name)
	}
	return made, nil
}
