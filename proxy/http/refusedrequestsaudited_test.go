package http_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// TestAttackRefusedRequestsAudited (found by the attack round, fixed): requests refused
// before any session takes them (a malformed path, a ';' in the query) are in the audit
// trail too, as auth.failed (check request) with the caller's identity — probing for path
// confusion leaves a trace. A malformed path cannot be routed: it is recorded on _unknown.
func TestAttackRefusedRequestsAudited(t *testing.T) {
	e := start(t)
	_, code, _ := e.curl(t, e.token, "--path-as-is", e.url+"/orders/%2e%2e%2fadmin")
	require.Equal(t, 400, code)
	_, code, _ = e.curl(t, e.token, e.url+"/orders/admin?x=1;y=2")
	require.Equal(t, 400, code)
	found := func(resource, what string) {
		e.events(t, resource, func(evs []schemas.Event) bool {
			for _, ev := range evs {
				if ev.Type != schemas.TypeAuthFailed {
					continue
				}
				var p schemas.AuthFailed
				require.NoError(t, jsonUnmarshal(ev.Payload, &p))
				if p.Check == "request" && strings.Contains(p.Message, what) && ev.Identity.Subject == "svc-billing" {
					return true
				}
			}
			return false
		})
	}
	found("_unknown", "%2e%2e%2fadmin")
	found("orders", "x=1;y=2")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
