package revoke

import (
	"slices"

	"github.com/gatehouse/gatehouse/schemas"
)

// IdentityValues are the values an identity revocation may name to reach id: its token
// subject, its readable name (identity.name: an administrator knows a colleague by email,
// not by the IdP's opaque ID), and the human behind a service token. A name shared by two
// identities (two issuers, or a name claim that is not unique) reaches both: revoking more
// than meant fails closed, never open.
func IdentityValues(id schemas.Identity) []string {
	vs := []string{id.Subject}
	for _, v := range []string{id.Name, id.OnBehalfOf} {
		if v != "" && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}

// MatchesIdentity reports whether r is a revocation of id (see IdentityValues).
func (r *Revocation) MatchesIdentity(id schemas.Identity) bool {
	return r.Kind == KindIdentity && slices.Contains(IdentityValues(id), r.Value)
}

// Revoker is who revoked, as people read it: the revoker's name, else the token subject.
func (r *Revocation) Revoker() string {
	if r.ByName != "" {
		return r.ByName
	}
	return r.By
}
