package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
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
	if c.Disabled || a.proxiesOnly() {
		return nil
	}
	kv, pending, err := a.openWebBuckets(ctx)
	if err != nil {
		return err
	}
	a.verifier.UseWebSessions(identity.NewWebSessions(kv, pending, c.IdleTimeout, c.AbsoluteTimeout, a.consolePublicURL()))
	return nil
}

// proxiesOnly reports whether this process runs protocol proxies alone with
// least-privilege credentials (nats.streams: bind): their credentials do not reach the
// console's sessions (which name who is signed in, and whose forgery would be a sign-in),
// and their APIs take tokens.
func (a *App) proxiesOnly() bool {
	if a.cfg.NATS.Streams != config.StreamsBind {
		return false
	}
	// The modules of a proxy-only process: its proxies and what they depend on.
	support := []string{"server", "nats", "bus", "identity", "publisher", "desired"}
	for _, n := range a.running {
		if !strings.HasPrefix(n, "proxy-") && !slices.Contains(support, n) {
			return false
		}
	}
	return true
}

// openWebBuckets opens (creates) the web console's buckets: sessions and sign-ins under
// way.
func (a *App) openWebBuckets(ctx context.Context) (sessions, pending jetstream.KeyValue, err error) {
	c := a.cfg.Console
	// Both buckets are bounded: when full, new sign-ins fail, and nothing else does (the
	// audit stream's storage is not theirs to take).
	sessions, err = a.bus.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketWebSessions, History: 1,
		TTL: c.AbsoluteTimeout + time.Hour, MaxBytes: 256 << 20, MaxValueSize: 16 << 10, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, fmt.Errorf("web sessions bucket: %w", err)
	}
	pending, err = a.bus.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketWebPending, History: 1,
		TTL: bus.WebPendingTTL, MaxBytes: 64 << 20, MaxValueSize: 4 << 10, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, fmt.Errorf("web sign-ins bucket: %w", err)
	}
	return sessions, pending, nil
}

// consolePublicURL is console.public_url, with the port this process listens on when the
// configured listen address left it to the system (":0").
func (a *App) consolePublicURL() string {
	u := a.cfg.Console.PublicURL
	if host, ok := strings.CutSuffix(u, ":0"); ok {
		if _, port, err := net.SplitHostPort(a.HTTPAddr()); err == nil {
			return host + ":" + port
		}
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
			if !a.trustsIssuer(issuer) {
				return fmt.Errorf("console.oidc.issuer: %q is not one of identity.issuers (the ID tokens it signs would be refused)", issuer)
			}
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

// samlOptions reads the service provider's keys and the IdP's metadata (from its file, or
// fetched from its URL: at most 1 MiB, within 15 s).
func samlOptions(s *config.ConsoleSAML) (*console.SAMLOptions, error) {
	o := &console.SAMLOptions{EntityID: s.EntityID, GroupsAttribute: s.GroupsAttribute, NameAttribute: s.NameAttribute,
		MaxClockSkew: s.MaxClockSkew}
	var err error
	if o.Certificate, err = console.ReadSAMLCertificate(s.CertificateFile); err != nil {
		return nil, fmt.Errorf("console.saml.certificate_file: %w", err)
	}
	if o.Key, err = console.ReadSAMLKey(s.KeyFile, o.Certificate); err != nil {
		return nil, fmt.Errorf("console.saml.key_file: %w", err)
	}
	if s.IdPMetadataFile != "" {
		b, err := os.ReadFile(s.IdPMetadataFile)
		if err == nil {
			o.IDPMetadata, err = console.ParseSAMLMetadata(b)
		}
		if err != nil {
			return nil, fmt.Errorf("console.saml.idp_metadata_file: %w", err)
		}
		return o, nil
	}
	// The metadata names the keys whose signatures sign people in: over plain HTTP anyone on
	// the way could swap them.
	if u, err := url.Parse(s.IdPMetadataURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && config.IsLoopbackHost(u.Hostname()))) {
		return nil, fmt.Errorf("console.saml.idp_metadata_url: %q: want an https URL (http only on this machine), or use idp_metadata_file", s.IdPMetadataURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if o.IDPMetadata, err = console.FetchSAMLMetadata(ctx, &http.Client{Timeout: 15 * time.Second}, s.IdPMetadataURL); err != nil {
		return nil, fmt.Errorf("console.saml.idp_metadata_url: %w", err)
	}
	return o, nil
}

// trustsIssuer reports whether tokens from issuer are accepted: one of identity.issuers,
// or the development issuer when it is on.
func (a *App) trustsIssuer(issuer string) bool {
	issuer = strings.TrimRight(issuer, "/")
	if a.cfg.Identity.DevIssuer && issuer == strings.TrimRight(a.DevIssuerURL(), "/") {
		return true
	}
	for _, is := range a.cfg.Identity.Issuers {
		if strings.TrimRight(is.Issuer, "/") == issuer {
			return true
		}
	}
	return false
}
