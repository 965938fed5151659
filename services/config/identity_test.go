package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// withIssuers is the valid config with its identity section replaced.
func withIssuers(identity string) string {
	return strings.Replace(valid, "identity:\n  issuers: [{issuer: \"https://idp.example.com\", audience: gatehouse}]\n", identity, 1)
}

func TestIssuerAudiencesAndNameClaims(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	c, err := config.Parse([]byte(withIssuers(`identity:
  issuers:
    - issuer: https://dex.example.com/dex
      audiences: [gatehouse, gatehouse-cli]
      name_claim: [email, preferred_username]
    - issuer: https://login.example.com/
      audience: api://gatehouse
      name_claim: upn
    - issuer: https://idp.example.com
      audience: gatehouse
`)))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	is := c.Identity.Issuers
	require.Equal(t, []string{"gatehouse", "gatehouse-cli"}, is[0].AcceptedAudiences())
	require.Equal(t, []string{"email", "preferred_username"}, is[0].NameClaim.Names)
	require.Equal(t, []string{"api://gatehouse"}, is[1].AcceptedAudiences(), "audience: keeps working")
	require.Equal(t, []string{"upn"}, is[1].NameClaim.Names)
	require.Empty(t, is[2].NameClaim.Names, "no name_claim: the defaults apply")
	require.Equal(t, "groups", is[2].GroupsClaim)
}

func TestIssuerConfigErrors(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	for _, tc := range []struct{ name, identity, want string }{
		{"duplicate issuer", `identity:
  issuers:
    - {issuer: "https://idp.example.com", audience: a}
    - {issuer: "https://idp.example.com/", audience: b}
`, `identity.issuers[1].issuer: "https://idp.example.com/" is already identity.issuers[0]: list an issuer once, with all its audiences under audiences`},
		{"no audience", `identity:
  issuers: [{issuer: "https://idp.example.com"}]
`, "identity.issuers[0].audience: required (audience: X, or audiences: [X, Y])"},
		{"empty audience list", `identity:
  issuers: [{issuer: "https://idp.example.com", audiences: []}]
`, "identity.issuers[0].audiences: empty: list at least one audience"},
		{"audience and audiences", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, audiences: [b]}]
`, `identity.issuers[0].audiences: audience and audiences are exclusive: put "a" in audiences`},
		{"blank audience", `identity:
  issuers: [{issuer: "https://idp.example.com", audiences: [a, ""]}]
`, "identity.issuers[0].audiences[1]: empty audience"},
		{"duplicate audience", `identity:
  issuers: [{issuer: "https://idp.example.com", audiences: [a, a]}]
`, `identity.issuers[0].audiences[1]: duplicate audience "a"`},
		{"name_claim a mapping", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, name_claim: {claim: email}}]
`, "identity.issuers[0].name_claim: a mapping is not a claim name (a string, or a list of strings)"},
		{"name_claim a number", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, name_claim: 7}]
`, "identity.issuers[0].name_claim: the number 7 is not a claim name"},
		{"name_claim list with a mapping", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, name_claim: [email, {x: y}]}]
`, "identity.issuers[0].name_claim: item 1: a mapping is not a claim name (a string)"},
		{"name_claim empty list", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, name_claim: []}]
`, "identity.issuers[0].name_claim: empty: name a claim (e.g. email), or leave name_claim out for the default (email, preferred_username, upn)"},
		{"name_claim empty string", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, name_claim: ""}]
`, "identity.issuers[0].name_claim: empty claim name"},
		{"name_claim with a space", `identity:
  issuers: [{issuer: "https://idp.example.com", audience: a, name_claim: [email, "user name"]}]
`, `identity.issuers[0].name_claim[1]: "user name" is not a claim name`},
		{"dev issuer also listed", `identity:
  dev_issuer: true
  dev_issuer_url: http://127.0.0.1:8080/dev/oidc/
  issuers: [{issuer: "http://127.0.0.1:8080/dev/oidc", audience: gatehouse}]
`, `identity.dev_issuer_url: "http://127.0.0.1:8080/dev/oidc/" is also identity.issuers[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(withIssuers(tc.identity)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLoginClient(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	c, err := config.Parse([]byte(valid))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, config.DefaultLoginClientID, c.Identity.Login.ClientID)
	require.Equal(t, []string{"openid", "profile", "email"}, c.Identity.Login.Scopes)
	require.Equal(t, "https://idp.example.com", c.Identity.LoginIssuer(""), "the only issuer")

	c, err = config.Parse([]byte(withIssuers(`identity:
  dev_issuer: true
  issuers: [{issuer: "https://idp.example.com", audience: gatehouse}]
`)))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "http://127.0.0.1:8080/dev/oidc", c.Identity.LoginIssuer("http://127.0.0.1:8080/dev/oidc/"), "the development issuer")

	c, err = config.Parse([]byte(withIssuers(`identity:
  issuers: [{issuer: "https://idp.example.com", audience: gatehouse}]
  login: {issuer: "https://idp.example.com/", client_id: cli, scopes: [openid, groups]}
`)))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "https://idp.example.com", c.Identity.LoginIssuer(""))

	c, err = config.Parse([]byte(withIssuers(`identity:
  issuers: [{issuer: "https://idp.example.com", audience: gatehouse}]
  login: {issuer: "https://other.example.com", client_id: " ", scopes: ["a b"]}
`)))
	require.NoError(t, err)
	err = c.Validate()
	require.ErrorContains(t, err, `identity.login.issuer: "https://other.example.com" is not one of identity.issuers`)
	require.ErrorContains(t, err, "identity.login.client_id: empty")
	require.ErrorContains(t, err, `identity.login.scopes[0]: "a b" is not a scope`)
}
