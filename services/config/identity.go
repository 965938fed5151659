package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Identity lists the token issuers the gateway trusts.
type Identity struct {
	Issuers []Issuer `yaml:"issuers"`
	// DevIssuer serves a development-only OIDC issuer on the HTTP server. Never in production.
	DevIssuer bool `yaml:"dev_issuer"`
	// DevIssuerURL is the issuer URL the development issuer announces, when the HTTP listen
	// address is not how others reach it (containers). Default http://<http_listen>/dev/oidc.
	DevIssuerURL string `yaml:"dev_issuer_url"`
	// Login is how people sign in from the CLI (`gatehouse ssh login`): the issuer and the
	// client registered there for the device (or authorization code) flow.
	Login Login `yaml:"login"`
}

// Login is the OIDC client the CLI signs people in with; the gateway announces it on
// GET /api/v1/ssh/login, so that the CLI needs no configuration of its own.
type Login struct {
	// Issuer is the issuer the CLI signs in at: one of identity.issuers (its tokens must be
	// accepted). Empty: the development issuer when dev_issuer is true, else the only issuer
	// when exactly one is listed.
	Issuer string `yaml:"issuer"`
	// ClientID is the public client (no secret) registered at the issuer with the device
	// authorization grant, or the authorization code flow with PKCE and a loopback redirect
	// (default gatehouse-cli, the development issuer's).
	ClientID string `yaml:"client_id"`
	// Scopes are asked for at sign-in (default openid, profile, email).
	Scopes []string `yaml:"scopes"`
}

// DefaultLoginClientID is the login client's ID when identity.login.client_id is not set.
const DefaultLoginClientID = "gatehouse-cli"

// LoginIssuer is the issuer people sign in at: identity.login.issuer, or, when empty, the
// development issuer (devIssuerURL, when dev_issuer is true), or the only trusted issuer.
// Empty when none applies.
func (id *Identity) LoginIssuer(devIssuerURL string) string {
	switch {
	case id.Login.Issuer != "":
		return strings.TrimRight(id.Login.Issuer, "/")
	case id.DevIssuer:
		return strings.TrimRight(devIssuerURL, "/")
	case len(id.Issuers) == 1:
		return strings.TrimRight(id.Issuers[0].Issuer, "/")
	}
	return ""
}

// Issuer is one trusted OIDC issuer (docs/identity.md).
type Issuer struct {
	// Issuer is the issuer URL, exactly as the tokens' iss claim and the discovery document
	// say it (a trailing slash is ignored when tokens are matched to issuers).
	Issuer string `yaml:"issuer"`
	// Audience is the one audience a token must carry; Audiences lists several, any one of
	// which will do. Set one of the two.
	Audience  string   `yaml:"audience"`
	Audiences []string `yaml:"audiences"`
	// GroupsClaim names the claim holding the caller's groups (default groups).
	GroupsClaim string `yaml:"groups_claim"`
	// KindClaim names a claim saying "service", "human" or "agent" (an AI agent, the MCP
	// server's callers); empty means service when the
	// token has no email, human otherwise.
	KindClaim string `yaml:"kind_claim"`
	// NameClaim is the claim, or the list of claims tried in order, whose string value is
	// the caller's readable name (identity.name), shown next to the token subject in
	// sessions, events and revocations. Default: DefaultNameClaims, then for service tokens
	// DefaultServiceNameClaims; the subject when none is present.
	NameClaim ClaimNames `yaml:"name_claim"`
}

// DefaultNameClaims name a person: tried in order when an issuer sets no name_claim.
var DefaultNameClaims = []string{"email", "preferred_username", "upn"}

// DefaultServiceNameClaims name the client a service token was issued to (OAuth
// client_id, OIDC azp, Okta cid, Entra ID v1 appid), tried after DefaultNameClaims for
// tokens of kind service only: a person's token names the person, never the app it came
// through.
var DefaultServiceNameClaims = []string{"client_id", "azp", "cid", "appid"}

// AcceptedAudiences is the audiences a token of this issuer may carry (one is enough).
func (is *Issuer) AcceptedAudiences() []string {
	if len(is.Audiences) > 0 {
		return is.Audiences
	}
	if is.Audience != "" {
		return []string{is.Audience}
	}
	return nil
}

// ClaimNames is one claim name or a list of them, in YAML a string or a sequence of
// strings. Any other YAML value is kept as a problem that Validate reports with the field
// path.
type ClaimNames struct {
	Names []string
	// set records that the key was present, problem what was wrong with its value.
	set     bool
	problem string
}

// Claims returns the claim names.
func Claims(names ...string) ClaimNames { return ClaimNames{Names: names, set: true} }

// UnmarshalYAML takes a string or a sequence of strings.
func (c *ClaimNames) UnmarshalYAML(n *yaml.Node) error {
	*c = ClaimNames{set: true}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			c.problem = fmt.Sprintf("%s is not a claim name (a string, or a list of strings)", yamlKind(n))
			return nil
		}
		c.Names = []string{n.Value}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.Tag != "!!str" {
				c.problem = fmt.Sprintf("item %d: %s is not a claim name (a string)", i, yamlKind(e))
				return nil
			}
			c.Names = append(c.Names, e.Value)
		}
	default:
		c.problem = fmt.Sprintf("%s is not a claim name (a string, or a list of strings)", yamlKind(n))
	}
	return nil
}

// MarshalYAML writes the names as a list.
func (c ClaimNames) MarshalYAML() (any, error) { return c.Names, nil }

func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return fmt.Sprintf("the number %s", n.Value)
	case "!!bool":
		return fmt.Sprintf("the boolean %s", n.Value)
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%s value %q", n.Tag, n.Value)
}

func (id *Identity) applyDefaults() {
	def(&id.Login.ClientID, DefaultLoginClientID)
	if id.Login.Scopes == nil {
		id.Login.Scopes = []string{"openid", "profile", "email"}
	}
	for i := range id.Issuers {
		def(&id.Issuers[i].GroupsClaim, "groups")
	}
}

// validate checks the trusted issuers: each once, with its audiences and claims.
func (id *Identity) validate(path string, ck *checker) {
	seen := map[string]int{}
	for i := range id.Issuers {
		is := &id.Issuers[i]
		p := fmt.Sprintf("%s.issuers[%d]", path, i)
		if !strings.HasPrefix(is.Issuer, "https://") && !strings.HasPrefix(is.Issuer, "http://") {
			ck.add(p+".issuer", "%q must be an http(s) URL", is.Issuer)
		} else {
			// Tokens are matched to issuers by iss without a trailing slash: two entries that
			// differ only by one would be one issuer, and one of them silently ignored.
			key := strings.TrimRight(is.Issuer, "/")
			if j, dup := seen[key]; dup {
				ck.add(p+".issuer", "%q is already %s.issuers[%d]: list an issuer once, with all its audiences under audiences", is.Issuer, path, j)
			} else {
				seen[key] = i
			}
		}
		is.validate(p, ck)
	}
	if id.DevIssuer && id.DevIssuerURL != "" {
		if j, dup := seen[strings.TrimRight(id.DevIssuerURL, "/")]; dup {
			ck.add(path+".dev_issuer_url", "%q is also %s.issuers[%d]: with dev_issuer: true the development issuer is trusted by itself; remove one", id.DevIssuerURL, path, j)
		}
	}
	id.Login.validate(path+".login", id, seen, ck)
}

// validate checks the login client: an issuer whose tokens the gateway accepts, a client
// ID, scopes without spaces.
func (l *Login) validate(path string, id *Identity, trusted map[string]int, ck *checker) {
	if l.Issuer != "" {
		key := strings.TrimRight(l.Issuer, "/")
		_, listed := trusted[key]
		dev := id.DevIssuer && (id.DevIssuerURL == "" || strings.TrimRight(id.DevIssuerURL, "/") == key)
		switch {
		case !strings.HasPrefix(l.Issuer, "https://") && !strings.HasPrefix(l.Issuer, "http://"):
			ck.add(path+".issuer", "%q must be an http(s) URL", l.Issuer)
		case !listed && !dev:
			ck.add(path+".issuer", "%q is not one of identity.issuers: the gateway would refuse the tokens people sign in for", l.Issuer)
		}
	}
	if strings.TrimSpace(l.ClientID) == "" {
		ck.add(path+".client_id", "empty: the client ID registered at the issuer for the CLI (default %s)", DefaultLoginClientID)
	}
	for i, s := range l.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			ck.add(fmt.Sprintf("%s.scopes[%d]", path, i), "%q is not a scope (one word)", s)
		}
	}
}

// validate checks one issuer's audiences and claims (its URL, against the other issuers,
// is Identity's to check).
func (is *Issuer) validate(path string, ck *checker) {
	switch {
	case is.Audience != "" && is.Audiences != nil:
		ck.add(path+".audiences", "audience and audiences are exclusive: put %q in audiences", is.Audience)
	case is.Audiences != nil && len(is.Audiences) == 0:
		ck.add(path+".audiences", "empty: list at least one audience a token must carry (e.g. the gateway's client ID at the IdP)")
	case is.Audiences == nil && is.Audience == "":
		ck.add(path+".audience", "required (audience: X, or audiences: [X, Y]): the aud a token must carry to be accepted")
	}
	auds := map[string]bool{}
	for j, a := range is.Audiences {
		ap := fmt.Sprintf("%s.audiences[%d]", path, j)
		if strings.TrimSpace(a) == "" {
			ck.add(ap, "empty audience")
		} else if auds[a] {
			ck.add(ap, "duplicate audience %q", a)
		}
		auds[a] = true
	}
	ck.claimName(path+".groups_claim", is.GroupsClaim)
	if is.KindClaim != "" {
		ck.claimName(path+".kind_claim", is.KindClaim)
	}
	nc := is.NameClaim
	switch {
	case nc.problem != "":
		ck.add(path+".name_claim", "%s", nc.problem)
	case nc.set && len(nc.Names) == 0:
		ck.add(path+".name_claim", "empty: name a claim (e.g. email), or leave name_claim out for the default (%s)", strings.Join(DefaultNameClaims, ", "))
	}
	for j, n := range nc.Names {
		np := path + ".name_claim"
		if len(nc.Names) > 1 {
			np = fmt.Sprintf("%s[%d]", np, j)
		}
		ck.claimName(np, n)
	}
}

// claimName checks a token claim's name: not empty, no spaces or control characters.
func (ck *checker) claimName(path, v string) {
	if v == "" {
		ck.add(path, "empty claim name")
		return
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f {
			ck.add(path, "%q is not a claim name (no spaces or control characters)", v)
			return
		}
	}
}
