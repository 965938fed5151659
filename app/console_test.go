package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// The console signs in only at an issuer whose tokens the gateway accepts.
func TestConsoleIssuerMustBeTrusted(t *testing.T) {
	a := &App{cfg: &config.Config{Identity: config.Identity{Issuers: []config.Issuer{{Issuer: "https://idp.example.com/"}},
		DevIssuerURL: "http://127.0.0.1:8080/dev/oidc"}}}
	require.True(t, a.trustsIssuer("https://idp.example.com"))
	require.False(t, a.trustsIssuer("https://idp.example.co"))
	require.False(t, a.trustsIssuer("http://127.0.0.1:8080/dev/oidc"), "the dev issuer is trusted only when it is on")
	a.cfg.Identity.DevIssuer = true
	require.True(t, a.trustsIssuer("http://127.0.0.1:8080/dev/oidc/"))
}
