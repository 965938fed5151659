package app

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/approvals/grants"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/revoke"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/catalogs"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/desired"
)

// policyService answers decisions with the policies in KV, recompiling on every change, and
// serves the policy and resource API.
func (a *App) policyService() *Service {
	var svc *policy.Service
	gen := func() uint64 { return 0 }
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
			gs, err := grants.Open(ctx, a.bus.JS)
			if err != nil {
				return err
			}
			live, err := gs.Watch(ctx, func(l *grants.Live) {
				svc.SetEngine(svc.Engine().WithGrantsGeneration(l.Generation()))
			})
			if err != nil {
				return err
			}
			svc.SetEngine(eng.WithGrantsGeneration(live.Generation()))
			svc.Grants = func(subject, resource string, now time.Time) []policy.Grant {
				var out []policy.Grant
				for _, g := range live.For(subject, resource, now) {
					out = append(out, policy.Grant{ID: g.ID, Role: g.Role, Resource: g.Resource, Expires: g.Expires})
				}
				return out
			}
			gen = live.Generation
			cats, err := catalogs.Open(ctx, a.bus.JS)
			if err != nil {
				return err
			}
			held := &policy.Catalogs{
				Fetch: func(resource string) (*schemas.Catalog, error) {
					fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					return cats.Get(fctx, resource)
				},
				OnError: func(resource string, err error) {
					log.Error("a catalog in KV cannot be used; decisions on its resource are refused until it can", "resource", resource, "err", err)
				},
			}
			if err := cats.Watch(ctx, held.Set, func(err error) {
				log.Error("unreadable catalog in KV", "err", err)
			}); err != nil {
				return err
			}
			svc.Catalogs = held
			// What the decision service would answer now, for policy authors and auditors
			// (the console's policy test).
			(&policy.TestAPI{Service: svc, Resource: a.resources.Resource, Verifier: a.verifier,
				Groups: append(slices.Clone(a.cfg.Query.AdminGroups), a.cfg.Query.AuditorGroups...)}).Register(a.echo)
			// What statements are resolved against, for policy authors and auditors (it
			// shows the schema: tables, columns, view definitions, functions).
			a.echo.GET("/api/v1/catalogs/:resource", func(c echo.Context) error {
				cat, err := cats.Get(c.Request().Context(), c.Param("resource"))
				if err != nil {
					return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
				}
				if cat == nil {
					return echo.NewHTTPError(http.StatusNotFound, "no catalog for resource "+c.Param("resource")+": a proxy reads it when a session of the resource starts")
				}
				return c.JSON(http.StatusOK, cat)
			}, a.verifier.Middleware(append(slices.Clone(a.cfg.Query.AdminGroups), a.cfg.Query.AuditorGroups...), "admin or auditor"))
			(&desired.API{Store: a.desired, JS: a.bus.JS, Verifier: a.verifier, Admins: a.cfg.Query.AdminGroups, Auditors: a.cfg.Query.AuditorGroups, Base: a.cfg,
				Compile: func(ps []config.Policy) (uint64, error) {
					if _, err := policy.Compile(ps, 0); err != nil {
						return 0, err
					}
					return policy.RevisionOf(ps), nil
				}}).Register(a.echo)
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
					if rev == svc.Engine().PolicyRevision() {
						return
					}
					eng, err := policy.Compile(ps, rev)
					if err != nil {
						// The API refuses such a set; only a direct KV write gets here.
						log.Error("policies in KV do not compile; the running policies stay in force", "err", err)
						return
					}
					svc.SetEngine(eng.WithGrantsGeneration(gen()))
					log.Info("policies changed", "revision", rev, "policies", len(ps))
				})
			}()
			err := svc.Announce(ctx)
			return errors.Join(err, <-errc)
		},
		Stop: func(ctx context.Context) error { return svc.Stop(ctx) },
	}
}
