package session_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

type resourceMap map[string]*config.Resource

func (m resourceMap) Resource(name string) (*config.Resource, bool) { r, ok := m[name]; return r, ok }

// Every proxy admits callers through the shared half: a resource of its protocol, a
// verified token; each refusal says what failed.
func TestAuthenticatorRefusesWhatItMust(t *testing.T) {
	a := &session.Authenticator{Verifier: identity.NewVerifier(context.Background(), nil, discard),
		Resources: resourceMap{"demo": {Name: "demo", Type: "postgres"}, "web": {Name: "web", Type: "http"}},
		Live:      session.NewRegistry(discard)}
	res, err := a.Resource("demo", "postgres")
	require.NoError(t, err)
	require.Equal(t, "demo", res.Name)
	for _, name := range []string{"web", "nosuch"} {
		_, err = a.Resource(name, "postgres")
		var ae *session.AuthError
		require.True(t, errors.As(err, &ae))
		require.Equal(t, "resource", ae.Class)
	}
	for token, check := range map[string]string{"": identity.CheckFormat, "not-a-jwt": identity.CheckFormat} {
		_, err = a.Authenticate(context.Background(), token)
		var ae *session.AuthError
		require.True(t, errors.As(err, &ae), "%q: %v", token, err)
		require.Equal(t, "token", ae.Class)
		require.Equal(t, check, ae.Check, token)
	}
}
