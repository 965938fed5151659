package session

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// A statement that runs another by name (EXECUTE, FETCH) is bound by that statement's
// decision: a refusal wins over everything, an approval the statement needs is needed
// (and shown to approvers) for it too, and a mask masks it unless it is held anyway.
func TestBindReferenced(t *testing.T) {
	approval := &schemas.ApprovalSpec{Approvers: []string{"approvers"}, Mode: "fail_fast"}
	allow := schemas.DecisionReply{Effect: schemas.EffectAllow, Policy: "p", Rule: "dba-anything"}
	deny := schemas.DecisionReply{Effect: schemas.EffectDeny, Policy: "p", Rule: "no", Reason: "never"}
	held := schemas.DecisionReply{Effect: schemas.EffectRequireApproval, Policy: "p", Rule: "deletes", Reason: "deletes need approval", Approval: approval}
	mask := schemas.DecisionReply{Effect: schemas.EffectMask, Policy: "p", Rule: "cards", Mask: &schemas.MaskSpec{Columns: []schemas.MaskColumn{{Column: "public.customers.card_number", Method: "redact"}}}}
	prep := &Query{sql: "PREPARE d AS delete from orders", stmtName: "d"}

	got := bindReferenced(allow, held, prep)
	require.Equal(t, schemas.EffectRequireApproval, got.Effect)
	require.Equal(t, approval, got.Approval)
	require.Equal(t, "deletes", got.Rule)
	require.Contains(t, got.Reason, `it runs prepared statement d ("PREPARE d AS delete from orders"), which needs approval: deletes need approval`)

	require.Equal(t, schemas.EffectDeny, bindReferenced(got, deny, prep).Effect, "a refusal wins over an approval")
	require.Equal(t, schemas.EffectDeny, bindReferenced(bindReferenced(allow, deny, prep), held, prep).Effect)
	require.Equal(t, got, bindReferenced(got, mask, prep), "held statements run as approved, not masked")
	require.Equal(t, schemas.EffectMask, bindReferenced(allow, mask, prep).Effect)
	// A statement that needs an approval of its own keeps it (the approvers see what it runs).
	own := held
	own.Rule, own.Approval = "executes", &schemas.ApprovalSpec{Approvers: []string{"dbas"}}
	require.Equal(t, own, bindReferenced(own, held, prep))

	// require_approval without an approval spec cannot be held: refused.
	noSpec := held
	noSpec.Approval = nil
	require.Equal(t, schemas.EffectDeny, bindReferenced(allow, noSpec, prep).Effect)

	// Approvers see the statement with what it runs.
	q := &Query{held: []*Query{prep}}
	require.Equal(t, "EXECUTE d\n-- runs prepared statement d: PREPARE d AS delete from orders", q.ApprovalText("EXECUTE d"))
	require.Equal(t, "select 1", (&Query{}).ApprovalText("select 1"))
	sqlPrepared := &Query{sql: "PREPARE d AS delete from orders"}
	require.Equal(t, "EXECUTE d\n-- runs: PREPARE d AS delete from orders", (&Query{held: []*Query{sqlPrepared}}).ApprovalText("EXECUTE d"))
}

// Event IDs are canonical UUIDv7 strings, as uuid.UUID.String writes them, and ordered by
// time.
func TestNewIDIsCanonicalUUIDv7(t *testing.T) {
	prev := ""
	for range 1000 {
		var b [36]byte
		newIDInto(&b)
		u, err := uuid.Parse(string(b[:]))
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), u.Version())
		require.Equal(t, u.String(), string(b[:]))
		require.Greater(t, string(b[:]), prev)
		prev = string(b[:])
	}
}
