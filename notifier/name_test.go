package notifier_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	gslack "github.com/gatehouse/gatehouse/notifier"
	"github.com/gatehouse/gatehouse/schemas"
)

// Approvers read who asks by name, with the IdP's subject next to it; a name is shown, never
// acted on by Slack.
func TestApprovalMessageNamesTheRequester(t *testing.T) {
	a := &approvals.Approval{ID: "a1", Resource: "demo", Status: approvals.Pending,
		Requester: schemas.Identity{Subject: "CgVhbGljZRIFbG9jYWw", Name: "alice@example.com", Kind: "human"},
		Request:   schemas.ApprovalRequested{Kind: "statement", Statement: "update orders set item = 'x' where id = 1", Required: 1, Approvers: []string{"approvers"}}}
	b, err := json.Marshal(gslack.Blocks(a, time.Now()))
	require.NoError(t, err)
	require.Contains(t, string(b), `*Requested by*\nalice@example.com (subject CgVhbGljZRIFbG9jYWw), human`)

	a.Requester.Name = "<!channel> <https://evil.example|bob>"
	b, err = json.Marshal(gslack.Blocks(a, time.Now()))
	require.NoError(t, err)
	require.Contains(t, string(b), `\u0026lt;!channel\u0026gt; \u0026lt;https://evil.example|bob\u0026gt;`)
	require.NotContains(t, string(b), "<!channel>")
}
