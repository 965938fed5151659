package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// A token carries the IdP's subject, often an opaque ID; the identity also gets a readable
// name from the issuer's name claims, and keeps the subject.
func TestNameFromClaims(t *testing.T) {
	d, iss := devServer(t)
	const sub = "CgxzdmMtZGVwbG95ZXISBWxvY2Fs" // Dex-style: base64 of a protobuf
	for _, tc := range []struct {
		name      string
		nameClaim config.ClaimNames
		kind      string
		claims    map[string]any
		want      string
	}{
		{name: "email first", claims: map[string]any{"email": "alice@example.com", "preferred_username": "alice"}, want: "alice@example.com"},
		{name: "preferred_username", claims: map[string]any{"preferred_username": "alice"}, want: "alice"},
		{name: "Entra ID v1 upn", claims: map[string]any{"upn": "alice@corp.example"}, want: "alice@corp.example"},
		{name: "service: client_id", claims: map[string]any{"client_id": "svc-deployer", "azp": "other"}, want: "svc-deployer"},
		{name: "service: azp (Keycloak, Entra ID v2)", claims: map[string]any{"azp": "svc-deployer"}, want: "svc-deployer"},
		{name: "service: Okta cid", claims: map[string]any{"cid": "0oa1b2c3"}, want: "0oa1b2c3"},
		{name: "a person's token never names the app it came through", kind: "human", claims: map[string]any{"azp": "web-console"}, want: sub},
		{name: "nothing: the subject", claims: map[string]any{}, want: sub},
		{name: "configured claim", nameClaim: config.Claims("login"), claims: map[string]any{"login": "alice", "email": "a@example.com"}, want: "alice"},
		{name: "configured list, in order", nameClaim: config.Claims("upn", "email"), claims: map[string]any{"email": "a@example.com"}, want: "a@example.com"},
		{name: "configured claim absent: the subject, not a default", nameClaim: config.Claims("login"), claims: map[string]any{"email": "a@example.com"}, want: sub},
		{name: "not a string: passed over", claims: map[string]any{"email": 42, "preferred_username": "alice"}, want: "alice"},
		{name: "control characters: passed over", claims: map[string]any{"email": "alice@example.com\r\x1b[2Kroot", "preferred_username": "alice"}, want: "alice"},
		{name: "direction override: passed over", claims: map[string]any{"email": "alice\u202e@example.com", "preferred_username": "alice"}, want: "alice"},
		{name: "too long: passed over", claims: map[string]any{"email": strings.Repeat("a", 300) + "@example.com", "preferred_username": "alice"}, want: "alice"},
		{name: "blank: passed over", claims: map[string]any{"email": "  ", "preferred_username": "alice"}, want: "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: iss, Audience: identity.DevAudience, GroupsClaim: "groups", NameClaim: tc.nameClaim}}, discard)
			tok, err := d.Mint(identity.TokenRequest{Subject: sub, Kind: tc.kind, Extra: tc.claims})
			require.NoError(t, err)
			id, err := v.Verify(context.Background(), tok)
			require.NoError(t, err)
			require.Equal(t, tc.want, id.Name)
			require.Equal(t, sub, id.Subject, "the subject is kept as it is")
		})
	}
}

// An issuer may accept several audiences: a token with any one of them is accepted, one
// with none is refused naming what it has and what is accepted.
func TestSeveralAudiences(t *testing.T) {
	d, iss := devServer(t)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: iss, Audiences: []string{"gatehouse", "api://gatehouse-prod"}, GroupsClaim: "groups"}}, discard)
	for _, aud := range []any{"gatehouse", "api://gatehouse-prod", []string{"other", "api://gatehouse-prod"}} {
		tok, err := d.Mint(identity.TokenRequest{Subject: "svc", Extra: map[string]any{"aud": aud}})
		require.NoError(t, err)
		_, err = v.Verify(context.Background(), tok)
		require.NoError(t, err, "aud %v", aud)
	}
	tok, err := d.Mint(identity.TokenRequest{Subject: "svc", Extra: map[string]any{"aud": []string{"account", "web-console"}}})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), tok)
	requireCheck(t, err, identity.CheckAudience)
	require.Contains(t, err.Error(), `token audience ["account", "web-console"] does not include ["gatehouse", "api://gatehouse-prod"]`)

	// An expired token with a wrong audience is still refused.
	old, err := d.MintAt(identity.TokenRequest{Subject: "svc", TTL: time.Minute, Audience: "other"}, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), old)
	require.Error(t, err)
}
