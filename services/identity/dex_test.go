package identity_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/services/identity/dextest"
)

// Tokens from Dex, an OpenID Connect provider this project did not write, with
// configuration only: its opaque subject is kept, the person is named by their email, an
// issuer accepts several audiences, and a token for another audience is refused saying
// which it has and which are accepted.
func TestDexTokens(t *testing.T) {
	dex := dextest.Start(t, dextest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := dextest.Users[0]
	verifier := func(is config.Issuer) *identity.Verifier {
		is.Issuer = dex.Issuer
		is.GroupsClaim = "groups"
		return identity.NewVerifier(t.Context(), []config.Issuer{is}, discard)
	}

	// The CLI client asks for a token whose audience is the gateway (Dex's cross-client
	// trust): aud is [gatehouse, gatehouse-cli], azp gatehouse-cli.
	tok, err := dex.PasswordGrant(ctx, dextest.CLI, dextest.CLISecret, alice, "email", "profile", "audience:server:client_id:"+dextest.Gateway)
	require.NoError(t, err)
	v := verifier(config.Issuer{Audience: dextest.Gateway})
	for name, raw := range map[string]string{"access token": tok.AccessToken, "ID token": tok.IDToken} {
		id, err := v.Verify(ctx, raw)
		require.NoError(t, err, name)
		require.Equal(t, alice.Email, id.Name, name)
		require.Equal(t, "human", id.Kind, name)
		require.Equal(t, strings.TrimRight(dex.Issuer, "/"), id.Issuer, name)
		// Dex's subject is an opaque encoding of the user ID and the connector: kept as it is.
		require.NotEqual(t, alice.Email, id.Subject)
		raw, err := base64.RawURLEncoding.DecodeString(id.Subject)
		require.NoError(t, err, "Dex's subject is base64url: %s", id.Subject)
		require.Contains(t, string(raw), alice.UserID)
		require.Contains(t, string(raw), "local")
	}

	// name_claim picks another claim: Dex's name is the user's username.
	id, err := verifier(config.Issuer{Audience: dextest.Gateway, NameClaim: config.Claims("name")}).Verify(ctx, tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, alice.Username, id.Name)

	// A token the CLI got for itself is not for the gateway.
	own, err := dex.PasswordGrant(ctx, dextest.CLI, dextest.CLISecret, alice, "email")
	require.NoError(t, err)
	_, err = v.Verify(ctx, own.AccessToken)
	requireCheck(t, err, identity.CheckAudience)
	require.Contains(t, err.Error(), `token audience "gatehouse-cli" does not include "gatehouse"`)
	// ... unless the issuer accepts that audience too.
	id, err = verifier(config.Issuer{Audiences: []string{dextest.Gateway, dextest.CLI}}).Verify(ctx, own.AccessToken)
	require.NoError(t, err)
	require.Equal(t, alice.Email, id.Name)

	// The gateway's own client (a service that logs in as alice): aud is gatehouse alone.
	svc, err := dex.PasswordGrant(ctx, dextest.Gateway, dextest.GatewaySecret, dextest.Users[1], "email")
	require.NoError(t, err)
	id, err = v.Verify(ctx, svc.IDToken)
	require.NoError(t, err)
	require.Equal(t, dextest.Users[1].Email, id.Name)
}

// Dex's tokens expire as its configuration says; an expired one is refused.
func TestDexExpiredToken(t *testing.T) {
	dex := dextest.Start(t, dextest.Options{IDTokenTTL: 2 * time.Second})
	ctx := context.Background()
	tok, err := dex.PasswordGrant(ctx, dextest.Gateway, dextest.GatewaySecret, dextest.Users[0], "email")
	require.NoError(t, err)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dex.Issuer, Audience: dextest.Gateway, GroupsClaim: "groups"}}, discard)
	id, err := v.Verify(ctx, tok.AccessToken)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, tok.AccessToken)
		return err != nil
	}, 30*time.Second, 100*time.Millisecond, "token valid until %s was still accepted", id.Expiry)
	_, err = v.Verify(ctx, tok.AccessToken)
	requireCheck(t, err, identity.CheckExpiry)
}
