package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// Resources looks the configured resources up by name.
type Resources interface {
	Resource(name string) (*config.Resource, bool)
}

// Authenticator admits callers for every proxy: the resource asked for, the caller's
// token verified, and no revocation in force against them. The protocol only says how the
// client names the resource and hands over its token, and renders a refusal its own way.
type Authenticator struct {
	Verifier  *identity.Verifier
	Resources Resources
	Live      *Registry
}

// AuthError is why a caller is not admitted. Class is what failed (resource, token,
// revoked), Check the check (as auth.failed records it), Msg the message for the client.
type AuthError struct {
	Class, Check, Msg string
}

func (e *AuthError) Error() string { return e.Msg }

// Resource is the resource a client asks for by name, if it is one of protocol's.
func (a *Authenticator) Resource(name, protocol string) (*config.Resource, error) {
	res, ok := a.Resources.Resource(name)
	if !ok || res.Type != protocol {
		return nil, &AuthError{Class: "resource", Check: "resource", Msg: fmt.Sprintf("resource %q is not a %s resource on this gateway", name, protocol)}
	}
	return res, nil
}

// Authenticate verifies a caller's token and refuses a caller a revocation in force
// matches.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*identity.Identity, error) {
	if token == "" {
		return nil, &AuthError{Class: "token", Check: identity.CheckFormat, Msg: "no token: send an OIDC access token"}
	}
	id, err := a.Verifier.Verify(ctx, token)
	if err != nil {
		var ie *identity.Error
		if errors.As(err, &ie) {
			return nil, &AuthError{Class: "token", Check: ie.Check, Msg: "token rejected: " + ie.Msg}
		}
		return nil, &AuthError{Class: "token", Check: "token", Msg: "token rejected: " + err.Error()}
	}
	if a.Live != nil {
		if err := a.Live.Admit(id.Identity); err != nil {
			return id, &AuthError{Class: "revoked", Check: "revoked", Msg: err.Error()}
		}
	}
	return id, nil
}
