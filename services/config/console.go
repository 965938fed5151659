package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Console configures the web console the query target serves (docs/console.md): how people
// sign in (OIDC, SAML) and how long a browser session lasts.
type Console struct {
	// Disabled turns the console off (the API still accepts bearer tokens).
	Disabled bool `yaml:"disabled"`
	// PublicURL is the console's address as browsers and identity providers reach it
	// (redirect and assertion consumer URLs are built from it). Default
	// http://<server.http_listen> (http://127.0.0.1:<port> when it listens on every
	// address). Anything but https is refused off a loopback host: the session cookie would
	// travel in clear.
	PublicURL string `yaml:"public_url"`
	// IdleTimeout ends a browser session unused this long (default 30m); AbsoluteTimeout
	// ends it this long after sign-in whatever happens (default 12h).
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
	// OIDC: sign-in with the authorization code flow and PKCE. Default: on, at the login
	// issuer (identity.login, the development issuer in gatehouse dev).
	OIDC ConsoleOIDC `yaml:"oidc"`
	// SAML: sign-in as a SAML 2.0 service provider, when set.
	SAML *ConsoleSAML `yaml:"saml"`
}

// ConsoleOIDC is the console's OIDC client.
type ConsoleOIDC struct {
	Disabled bool `yaml:"disabled"`
	// Issuer is one of identity.issuers (its groups and name claims apply). Default: the
	// login issuer.
	Issuer string `yaml:"issuer"`
	// ClientID is the console's client at the issuer (default gatehouse-console).
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client's secret, for a confidential client; empty for a
	// public client (PKCE only).
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes asked for (default openid, profile, email, groups).
	Scopes []string `yaml:"scopes"`
}

// ConsoleSAML is the console as a SAML service provider.
type ConsoleSAML struct {
	// IdPMetadataURL or IdPMetadataFile: the identity provider's metadata (its entity ID,
	// SSO URL and signing certificate).
	IdPMetadataURL  string `yaml:"idp_metadata_url"`
	IdPMetadataFile string `yaml:"idp_metadata_file"`
	// EntityID is the service provider's (default <public_url>/auth/saml/metadata).
	EntityID string `yaml:"entity_id"`
	// CertificateFile and KeyFile: the service provider's key pair (PEM), which signs its
	// requests and is published in its metadata.
	CertificateFile string `yaml:"certificate_file"`
	KeyFile         string `yaml:"key_file"`
	// GroupsAttribute names the assertion attribute with the person's groups (default
	// groups); NameAttribute the one with a readable name (default: the NameID).
	GroupsAttribute string `yaml:"groups_attribute"`
	NameAttribute   string `yaml:"name_attribute"`
	// MaxClockSkew bounds the difference between the IdP's clock and ours (default 90s,
	// at most 5m).
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
}

// DefaultConsoleClientID is the console's OIDC client ID unless console.oidc.client_id says.
const DefaultConsoleClientID = "gatehouse-console"

func (c *Console) applyDefaults(httpListen string) {
	if c.PublicURL == "" {
		// A server listening on every address is reached from this machine as 127.0.0.1
		// by default (a published container port); anything else names public_url.
		host, port, err := net.SplitHostPort(httpListen)
		if ip := net.ParseIP(host); err == nil && (host == "" || (ip != nil && ip.IsUnspecified())) {
			httpListen = net.JoinHostPort("127.0.0.1", port)
		}
		c.PublicURL = "http://" + httpListen
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.AbsoluteTimeout == 0 {
		c.AbsoluteTimeout = 12 * time.Hour
	}
	def(&c.OIDC.ClientID, DefaultConsoleClientID)
	if len(c.OIDC.Scopes) == 0 {
		c.OIDC.Scopes = []string{"openid", "profile", "email", "groups"}
	}
	if s := c.SAML; s != nil {
		def(&s.EntityID, c.PublicURL+"/auth/saml/metadata")
		def(&s.GroupsAttribute, "groups")
		if s.MaxClockSkew == 0 {
			s.MaxClockSkew = 90 * time.Second
		}
	}
}

func (c *Console) validate(path string, ck *checker) {
	if c.Disabled {
		return
	}
	u, err := url.Parse(c.PublicURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/"):
		ck.add(path+".public_url", "%q is not a URL like https://gatehouse.example.com (scheme and host, no path)", c.PublicURL)
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		ck.add(path+".public_url", "%q: a console off this machine needs https (the session cookie would travel in clear)", c.PublicURL)
	}
	if c.IdleTimeout < time.Minute || c.IdleTimeout > c.AbsoluteTimeout {
		ck.add(path+".idle_timeout", "%s: want at least 1m and no more than absolute_timeout (%s)", c.IdleTimeout, c.AbsoluteTimeout)
	}
	if c.AbsoluteTimeout > 7*24*time.Hour {
		ck.add(path+".absolute_timeout", "%s: at most 168h", c.AbsoluteTimeout)
	}
	if s := c.SAML; s != nil {
		p := path + ".saml"
		if (s.IdPMetadataURL == "") == (s.IdPMetadataFile == "") {
			ck.add(p, "set one of idp_metadata_url and idp_metadata_file")
		}
		ck.required(p+".certificate_file", s.CertificateFile)
		ck.required(p+".key_file", s.KeyFile)
		if s.MaxClockSkew < 0 || s.MaxClockSkew > 5*time.Minute {
			ck.add(p+".max_clock_skew", "%s: want 0..5m", s.MaxClockSkew)
		}
	}
}

// IsLoopbackHost reports whether host (a name or an address) is this machine.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
