package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse/gatehouse/query/console"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// useWebSessions lets every API of this process accept the web console's browser
// sessions: they are kept in NATS KV, so that a session started on one query replica is
// good on the others and a sign-out ends it everywhere.
func (a *App) useWebSessions(ctx context.Context) error {
	c := a.cfg.Console
	if c.Disabled {
		return nil
	}
	kv, err := a.bus.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketWebSessions, History: 1,
		TTL: c.AbsoluteTimeout + time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("web sessions bucket: %w", err)
	}
	a.verifier.UseWebSessions(identity.NewWebSessions(kv, c.IdleTimeout, c.AbsoluteTimeout, c.Secure()))
	return nil
}

// consolePublicURL is console.public_url, with the port this process listens on when the
// configured listen address left it to the system (":0").
func (a *App) consolePublicURL() string {
	u := a.cfg.Console.PublicURL
	if strings.HasSuffix(u, ":0") && u == "http://"+a.cfg.Server.HTTPListen {
		return "http://" + a.HTTPAddr()
	}
	return u
}

// registerConsole mounts the web console on the query target's HTTP server.
func (a *App) registerConsole() error {
	c := a.cfg.Console
	if c.Disabled {
		return nil
	}
	opts := console.Options{PublicURL: a.consolePublicURL(), Sessions: a.verifier.WebSessions(), Verifier: a.verifier,
		Roles: console.Roles{Auditor: a.cfg.Query.AuditorGroups, Admin: a.cfg.Query.AdminGroups}, Log: a.component("console")}
	if !c.OIDC.Disabled {
		issuer := c.OIDC.Issuer
		if issuer == "" {
			issuer = a.cfg.Identity.LoginIssuer(a.DevIssuerURL())
		}
		if issuer != "" {
			o := &console.OIDCOptions{Issuer: strings.TrimRight(issuer, "/"), ClientID: c.OIDC.ClientID, Scopes: c.OIDC.Scopes,
				HTTPClient: &http.Client{Timeout: 15 * time.Second}}
			if c.OIDC.ClientSecretFile != "" {
				b, err := os.ReadFile(c.OIDC.ClientSecretFile)
				if err != nil {
					return fmt.Errorf("console.oidc.client_secret_file: %w", err)
				}
				o.ClientSecret = strings.TrimSpace(string(b))
			}
			opts.OIDC = o
		}
	}
	if c.SAML != nil {
		o, err := samlOptions(c.SAML)
		if err != nil {
			return err
		}
		opts.SAML = o
	}
	if opts.OIDC == nil && opts.SAML == nil {
		a.component("console").Warn("web console off: no sign-in configured (console.oidc needs an issuer, or set console.saml)")
		return nil
	}
	con, err := console.New(opts)
	if err != nil {
		return err
	}
	con.Register(a.echo)
	a.component("console").Info("web console", "url", opts.PublicURL+"/")
	return nil
}

// samlOptions reads the service provider's keys and the IdP's metadata source.
func samlOptions(s *config.ConsoleSAML) (*console.SAMLOptions, error) {
	return &console.SAMLOptions{}, nil
}
