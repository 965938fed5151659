package schemas

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The session's envelope encoder writes exactly what Event.AppendJSON writes for an event
// with its hash empty (hashes are computed over these bytes), for identities and values
// that need escaping too.
func TestEnvelopeEncoderMatchesAppendJSON(t *testing.T) {
	ids := []Identity{
		{Subject: "svc-orders", Issuer: "http://127.0.0.1:8080/dev/oidc", Groups: []string{"orders-readers"}, Kind: "service"},
		{Subject: "weird \"name\"\twith\\escapes é <&>", Issuer: "https://idp.example/", Kind: "human", OnBehalfOf: "ada@example.com"},
		{},
	}
	payloads := []Payload{
		&DbQuery{QueryID: 7, SQL: "select '\u2028' -- é", Protocol: "simple"},
		&Decision{QueryID: 7, Effect: "allow", Kinds: []string{"select"}, Cached: true},
		&SessionEnd{Reason: "client_closed"},
	}
	for _, id := range ids {
		for _, resource := range []string{"demo", "odd \"resource\""} {
			enc := NewEnvelopeEncoder("01a20278-5989-74e0-a306-ce94ba83bc60", &id, resource)
			for i, p := range payloads {
				for _, rev := range []uint64{0, 3393301679376328} {
					ev := Event{ID: "01a20278-5d6c-71db-8b26-0f21fa6d8eb7", Type: p.EventType(), Code: Codes[p.EventType()],
						Time: time.Date(2026, 11, 22, 8, 56, 12, 391930000+i, time.UTC), SessionID: "01a20278-5989-74e0-a306-ce94ba83bc60",
						Seq: uint64(36192 + i), Identity: id, Resource: resource, PolicyRevision: rev, PrevHash: "b41c862b", Payload: p.AppendJSON(nil)}
					unhashed := enc.AppendUnhashed(nil, []byte(ev.ID), ev.Type, ev.Code, ev.Time, ev.Seq, rev, []byte(ev.PrevHash), ev.Payload)
					require.Equal(t, string(ev.AppendJSON(nil)), string(unhashed))
					ev.PrevHash, ev.Payload = "", nil
					unhashed = enc.AppendUnhashed(nil, []byte(ev.ID), ev.Type, ev.Code, ev.Time, ev.Seq, rev, nil, ev.Payload)
					require.Equal(t, string(ev.AppendJSON(nil)), string(unhashed), "a session's first event")
				}
			}
		}
	}
}
