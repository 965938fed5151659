package app

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/proxy/mcp"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/catalogs"
)

// mcpService is the MCP server for AI agents (target mcp), on the HTTP server at
// mcp.path, with its protected-resource metadata under /.well-known. Its query tool runs
// statements through the PostgreSQL proxy of this process (over loopback, the agent's
// token as the password), so the target needs proxy-postgres beside it: one decision,
// masking, approval and recording path for every client.
func (a *App) mcpService() *Service {
	var srv *mcp.Server
	return &Service{
		Start: func(ctx context.Context) error {
			pg, err := loopback(a.ListenAddr("postgres"))
			if err != nil && !slices.Contains(a.requested, "mcp") {
				// Part of all, not asked for: the rest of the gateway runs without it.
				a.component("mcp").Warn("MCP server not started: the PostgreSQL proxy of this process is not reachable over loopback; run target mcp where it is", "err", err)
				return nil
			}
			if err != nil {
				return fmt.Errorf("mcp: the PostgreSQL proxy of this process: %w", err)
			}
			mc := a.cfg.MCP
			resURL := mc.ResourceURL
			if resURL == "" {
				resURL = "http://" + a.HTTPAddr() + mc.Path
			}
			cats, err := catalogs.Open(ctx, a.bus.JS)
			if err != nil {
				return err
			}
			var issuers []string
			for _, is := range a.cfg.Identity.Issuers {
				issuers = append(issuers, strings.TrimRight(is.Issuer, "/"))
			}
			if a.cfg.Identity.DevIssuer {
				issuers = append(issuers, a.DevIssuerURL())
			}
			srv, err = mcp.New(mcp.Config{MCP: mc, ResourceURL: resURL, AuthorizationServers: issuers, Postgres: pg,
				AuditMode: a.cfg.Audit.Mode, Version: "dev",
				Limits: session.Limits{ResultChunkBytes: a.cfg.Audit.ResultChunkBytes, MaxResultBytes: a.cfg.Audit.MaxResultBytes, MaxSQLBytes: a.cfg.Audit.MaxSQLBytes}},
				mcp.Deps{Resources: a.resources, Verifier: a.verifier, Publisher: a.pub, Catalogs: cats, AgentCalls: a.agents,
					Decider: &session.NATSDecider{NC: a.bus.NC, Timeout: a.cfg.Proxy.DecisionTimeout}}, a.component("mcp"))
			if err != nil {
				return err
			}
			a.echo.Any(mc.Path, echo.WrapHandler(srv.Handler()))
			meta := echo.WrapHandler(srv.Metadata())
			a.echo.Match([]string{"GET", "OPTIONS"}, mcp.MetadataPrefix+mc.Path, meta)
			a.echo.Match([]string{"GET", "OPTIONS"}, mcp.MetadataPrefix, meta)
			return nil
		},
		Run: func(ctx context.Context) error { <-ctx.Done(); return nil },
		Stop: func(ctx context.Context) error {
			if srv == nil {
				return nil
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return srv.Close(sctx)
		},
	}
}

// loopback is how this process reaches a listener of its own bound at addr: over
// loopback. A listener on one address that is not loopback is refused: the agent's token
// would leave the host in the clear.
func loopback(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("not listening (%q)", addr)
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return "", fmt.Errorf("listens on %q, not an IP address", host)
	case ip.IsUnspecified() && ip.To4() != nil:
		return net.JoinHostPort("127.0.0.1", port), nil
	case ip.IsUnspecified():
		return net.JoinHostPort("::1", port), nil
	case ip.IsLoopback():
		return addr, nil
	}
	return "", fmt.Errorf("listens on %s only, not on loopback: the MCP server sends agents' tokens to it over loopback (set proxy.postgres.listen to a loopback or unspecified address)", host)
}
