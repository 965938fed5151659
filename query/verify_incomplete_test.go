package query

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

func payloadTrail(t *testing.T, payloads ...schemas.Payload) []schemas.Event {
	var evs []schemas.Event
	for i, p := range payloads {
		raw, err := json.Marshal(p)
		require.NoError(t, err)
		evs = append(evs, schemas.Event{Seq: uint64(i + 1), Type: p.EventType(), Payload: raw})
	}
	return evs
}

func TestIncompleteStatements(t *testing.T) {
	start := &schemas.SessionStart{Protocol: "postgres"}
	ran := &schemas.DbQuery{QueryID: 1, SQL: "update orders set total = 0", Protocol: "simple"}
	done := &schemas.DbQueryDone{QueryID: 1, Status: "ok"}
	prepared := &schemas.DbQuery{QueryID: 2, SQL: "select 1", Protocol: "extended"}
	bound := &schemas.DbBind{QueryID: 2}
	lost := &schemas.SessionEnd{Reason: "gateway_lost"}
	closed := &schemas.SessionEnd{Reason: "client_closed"}

	require.Empty(t, incompleteStatements("s", payloadTrail(t, start, ran)), "an open session's statement may still run")
	require.Empty(t, incompleteStatements("s", payloadTrail(t, start, ran, done, closed)))
	require.Empty(t, incompleteStatements("s", payloadTrail(t, start, prepared, closed)), "prepared, never executed")

	p := incompleteStatements("s", payloadTrail(t, start, ran, lost))
	require.Len(t, p, 1)
	require.Equal(t, ProblemIncomplete, p[0].Kind)
	require.Equal(t, uint64(1), p[0].Query)
	require.Equal(t, uint64(2), p[0].Seq)
	require.Contains(t, p[0].Detail, "gateway process was lost")
	require.Contains(t, p[0].Detail, `"update orders set total = 0"`)

	p = incompleteStatements("s", payloadTrail(t, start, prepared, bound, ran, done, closed))
	require.Len(t, p, 1, "executed in the extended protocol (bound), no completion")
	require.Equal(t, uint64(2), p[0].Query)
	require.Contains(t, p[0].Detail, "events lost")
}
