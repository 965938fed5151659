package identity_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// devServer serves a development issuer on an httptest server.
func devServer(t *testing.T) (*identity.DevIssuer, string) {
	t.Helper()
	e := echo.New()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	d, err := identity.NewDevIssuer(srv.URL+identity.DevIssuerPath, t.TempDir(), discard)
	require.NoError(t, err)
	d.Register(e)
	return d, d.Issuer()
}

func verifier(t *testing.T, issuer string) *identity.Verifier {
	return identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: issuer, Audience: identity.DevAudience, GroupsClaim: "groups"}}, discard)
}

func requireCheck(t *testing.T, err error, check string) {
	t.Helper()
	require.Error(t, err)
	var ie *identity.Error
	require.ErrorAs(t, err, &ie)
	require.Equal(t, check, ie.Check, ie.Msg)
}

func TestVerify(t *testing.T) {
	d, iss := devServer(t)
	v := verifier(t, iss)
	ctx := context.Background()

	tok, err := d.Mint(identity.TokenRequest{Subject: "svc-orders", Groups: []string{"orders-readers"}, TTL: time.Minute, OnBehalfOf: "alice"})
	require.NoError(t, err)
	id, err := v.Verify(ctx, tok)
	require.NoError(t, err)
	require.Equal(t, "svc-orders", id.Subject)
	require.Equal(t, iss, id.Issuer)
	require.Equal(t, []string{"orders-readers"}, id.Groups)
	require.Equal(t, "service", id.Kind)
	require.Equal(t, "alice", id.OnBehalfOf)

	t.Run("wrong audience", func(t *testing.T) {
		tok, err := d.Mint(identity.TokenRequest{Subject: "x", Audience: "someone-else"})
		require.NoError(t, err)
		_, err = v.Verify(ctx, tok)
		requireCheck(t, err, identity.CheckAudience)
	})
	t.Run("untrusted issuer", func(t *testing.T) {
		other, _ := devServer(t)
		tok, err := other.Mint(identity.TokenRequest{Subject: "x"})
		require.NoError(t, err)
		_, err = v.Verify(ctx, tok)
		requireCheck(t, err, identity.CheckIssuer)
	})
	t.Run("forged signature", func(t *testing.T) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, nil)
		require.NoError(t, err)
		forged, err := jwt.Signed(signer).Claims(map[string]any{"iss": iss, "sub": "x", "aud": identity.DevAudience,
			"exp": time.Now().Add(time.Hour).Unix()}).Serialize()
		require.NoError(t, err)
		_, err = v.Verify(ctx, forged)
		requireCheck(t, err, identity.CheckSignature)
	})
	t.Run("not a JWT", func(t *testing.T) {
		_, err := v.Verify(ctx, "hunter2")
		requireCheck(t, err, identity.CheckFormat)
	})
	t.Run("oversized", func(t *testing.T) {
		_, err := v.Verify(ctx, string(make([]byte, 20000)))
		requireCheck(t, err, identity.CheckFormat)
	})
	t.Run("unreachable issuer fails closed", func(t *testing.T) {
		dead := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: "http://127.0.0.1:1/dev/oidc", Audience: "gatehouse"}}, discard)
		other, err := identity.NewDevIssuer("http://127.0.0.1:1/dev/oidc", t.TempDir(), discard)
		require.NoError(t, err)
		tok, err := other.Mint(identity.TokenRequest{Subject: "x"})
		require.NoError(t, err)
		_, err = dead.Verify(ctx, tok)
		requireCheck(t, err, identity.CheckDiscovery)
	})
}

func TestExpired(t *testing.T) {
	d, iss := devServer(t)
	v := verifier(t, iss)
	tok, err := d.MintAt(identity.TokenRequest{Subject: "x", TTL: time.Minute}, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), tok)
	requireCheck(t, err, identity.CheckExpiry)
	require.Contains(t, err.Error(), "token expired at")
}

func TestMintLimits(t *testing.T) {
	d, _ := devServer(t)
	_, err := d.Mint(identity.TokenRequest{})
	require.ErrorContains(t, err, "subject is required")
	_, err = d.Mint(identity.TokenRequest{Subject: "x", TTL: 48 * time.Hour})
	require.ErrorContains(t, err, "longer than")
}

// An ID token for the console: its client among the audiences and, with several audiences
// or an azp at all, the authorized party (OIDC Core 3.1.3.7).
func TestVerifyIDTokenAuthorizedParty(t *testing.T) {
	d, iss := devServer(t)
	v := verifier(t, iss)
	mint := func(extra map[string]any) string {
		tok, err := d.Mint(identity.TokenRequest{Subject: "alice", TTL: time.Minute, Extra: extra})
		require.NoError(t, err)
		return tok
	}
	_, err := v.VerifyIDToken(t.Context(), mint(map[string]any{"aud": "gatehouse-console", "nonce": "n1"}), "gatehouse-console", "n1")
	require.NoError(t, err)
	_, err = v.VerifyIDToken(t.Context(), mint(map[string]any{"aud": []string{"gatehouse-console", "other-app"}, "azp": "gatehouse-console", "nonce": "n1"}), "gatehouse-console", "n1")
	require.NoError(t, err)
	// Issued to another client that also names the console: not the console's.
	_, err = v.VerifyIDToken(t.Context(), mint(map[string]any{"aud": []string{"other-app", "gatehouse-console"}, "azp": "other-app", "nonce": "n1"}), "gatehouse-console", "n1")
	requireCheck(t, err, identity.CheckAudience)
	_, err = v.VerifyIDToken(t.Context(), mint(map[string]any{"aud": []string{"other-app", "gatehouse-console"}, "nonce": "n1"}), "gatehouse-console", "n1")
	requireCheck(t, err, identity.CheckAudience)
	_, err = v.VerifyIDToken(t.Context(), mint(map[string]any{"aud": "gatehouse-console", "azp": "other-app", "nonce": "n1"}), "gatehouse-console", "n1")
	requireCheck(t, err, identity.CheckAudience)
}
