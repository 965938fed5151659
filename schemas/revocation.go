package schemas

// What a revocation means, for every side that reads one (the proxies' session registry,
// the approvals' grants, the revocations API): when it is in force, whom it reaches, and
// the subject it is published on.

import (
	"encoding/base64"
	"slices"
	"strings"
	"time"
)

// RevocationSubject is the subject of a target's revocation: the value is encoded so that
// any subject name, email or id is one subject token.
func RevocationSubject(kind, value string) string {
	return SubjectRevoke + "." + kind + "." + base64.RawURLEncoding.EncodeToString([]byte(value))
}

// Key is the target, kind:value.
func (r *RevocationState) Key() string { return r.Kind + ":" + r.Value }

// Active reports whether the revocation is in force at now.
func (r *RevocationState) Active(now time.Time) bool {
	return !r.Lifted && (r.Until.IsZero() || now.Before(r.Until))
}

// Why is the reason, for a message: "no reason given" when the revocation was published
// without one (the API requires one; older revocations and direct publishers may lack it).
func (r *RevocationState) Why() string {
	if strings.TrimSpace(r.Reason) == "" {
		return "no reason given"
	}
	return r.Reason
}

// Revoker is who revoked, as people read it: the revoker's name, else the token subject.
func (r *RevocationState) Revoker() string {
	if r.ByName != "" {
		return r.ByName
	}
	return r.By
}

// RevocationTargets are the values an identity revocation may name to reach id: its token
// subject, its readable name (identity.name: an administrator knows a colleague by email,
// not by the IdP's opaque ID), and the human behind a service token. A name shared by two
// identities (two issuers, or a name claim that is not unique) reaches both: revoking more
// than meant fails closed, never open.
func RevocationTargets(id Identity) []string {
	vs := []string{id.Subject}
	for _, v := range []string{id.Name, id.OnBehalfOf} {
		if v != "" && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}

// MatchesIdentity reports whether r is a revocation of id (see RevocationTargets).
func (r *RevocationState) MatchesIdentity(id Identity) bool {
	return r.Kind == RevokeKindIdentity && slices.Contains(RevocationTargets(id), r.Value)
}
