package schemas_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// A revocation reaches an identity by its subject, its name or the human behind it; it is
// in force until it lapses or is lifted; its JSON is what was published before it was a
// contract (no until when none).
func TestRevocationState(t *testing.T) {
	id := schemas.Identity{Subject: "CgVhbGljZRIFbG9jYWw", Name: "alice@example.com", OnBehalfOf: "bob"}
	for _, v := range []string{"CgVhbGljZRIFbG9jYWw", "alice@example.com", "bob"} {
		rv := schemas.RevocationState{Kind: schemas.RevokeKindIdentity, Value: v}
		if !rv.MatchesIdentity(id) {
			t.Errorf("identity revocation of %q does not reach %+v", v, id)
		}
	}
	for _, rv := range []schemas.RevocationState{{Kind: schemas.RevokeKindIdentity, Value: "carol"}, {Kind: schemas.RevokeKindSession, Value: "alice@example.com"}} {
		if rv.MatchesIdentity(id) {
			t.Errorf("%+v reaches %+v", rv, id)
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !(&schemas.RevocationState{}).Active(now) || (&schemas.RevocationState{Lifted: true}).Active(now) ||
		(&schemas.RevocationState{Until: now}).Active(now) || !(&schemas.RevocationState{Until: now.Add(time.Second)}).Active(now) {
		t.Error("Active: in force until it lapses or is lifted")
	}
	b, _ := json.Marshal(schemas.RevocationState{Kind: "grant", Value: "g1", By: "x", At: now})
	if want := `{"kind":"grant","value":"g1","by":"x","at":"2026-01-01T00:00:00Z"}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	if got := schemas.RevocationSubject("identity", "a.b@c"); got != "gh.revoke.identity.YS5iQGM" {
		t.Errorf("subject %s", got)
	}
}
