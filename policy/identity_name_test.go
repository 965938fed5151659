package policy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
)

// Rules can name callers as people read them (identity.name) while the subject stays
// identity.sub.
func TestRulesSeeIdentityName(t *testing.T) {
	e, err := policy.Compile([]config.Policy{{Name: "p", Resources: []string{"demo"}, Rules: []config.Rule{
		{Name: "alice-reads", Effect: "allow", When: `identity.name == "alice@example.com" && identity.sub == "CgVhbGljZRIFbG9jYWw" && request.sql.read_only`},
	}}}, 1)
	require.NoError(t, err)
	ask := func(sub, name string) schemas.DecisionReply {
		return e.Decide(&policy.Input{DecisionRequest: schemas.DecisionRequest{Identity: schemas.Identity{Subject: sub, Name: name}, Resource: schemas.Resource{Name: "demo", Type: "postgres"}, SQL: &schemas.SQLRequest{Text: "select * from orders"}}, Catalog: testCatalog}, time.Now())
	}
	require.Equal(t, "allow", ask("CgVhbGljZRIFbG9jYWw", "alice@example.com").Effect)
	require.Equal(t, "deny", ask("CgVhbGljZRIFbG9jYWw", "mallory@example.com").Effect)
	require.Equal(t, "deny", ask("CgdtYWxsb3J5", "alice@example.com").Effect)
}
