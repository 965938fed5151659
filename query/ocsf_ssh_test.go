package query

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
)

// Every event of an SSH session maps to SSH Activity with the activity its kind has; the
// fields a SIEM reads (endpoints, auth type, status and its detail, traffic, file) are set.
func TestOCSFMapsSSHSessions(t *testing.T) {
	events := sshEvents(t, "ssh-1")
	type mapped struct {
		activity int
		name     string
		status   int
	}
	seen := map[string][]mapped{}
	var recs []map[string]any
	for i := range events {
		rec := roundTrip(t, OCSFProtocol(&events[i], "ssh"))
		if events[i].Type == schemas.TypeApprovalRequested || events[i].Type == schemas.TypeApprovalDecided {
			require.EqualValues(t, 6003, rec["class_uid"], "approvals keep their generic mapping")
			continue
		}
		require.EqualValues(t, 4007, rec["class_uid"], events[i].Type)
		require.EqualValues(t, 4, rec["category_uid"])
		require.EqualValues(t, 4007*100+int(rec["activity_id"].(float64)), rec["type_uid"])
		require.Equal(t, map[string]any{"name": "web-1", "svc_name": "ssh"}, rec["dst_endpoint"])
		m := mapped{int(rec["activity_id"].(float64)), rec["activity_name"].(string), int(rec["status_id"].(float64))}
		if !containsMapped(seen[events[i].Type], m) {
			seen[events[i].Type] = append(seen[events[i].Type], m)
		}
		recs = append(recs, rec)
	}
	require.Equal(t, map[string][]mapped{
		"session.start": {{1, "Open", 1}},
		"ssh.request":   {{99, "Request", 0}},
		"decision":      {{99, "Allow", 1}, {99, "Hold", 99}, {5, "Refuse", 2}},
		"ssh.io":        {{6, "Traffic", 1}},
		"ssh.exit":      {{6, "Traffic", 1}},
		"ssh.file":      {{6, "Traffic", 1}},
		"session.end":   {{2, "Close", 1}},
	}, seen)

	start := recs[0]
	require.Equal(t, map[string]any{"ip": "10.0.0.5", "port": 51234.0}, start["src_endpoint"])
	require.EqualValues(t, 99, start["auth_type_id"])
	require.Equal(t, "Token", start["auth_type"])
	require.Equal(t, "2.0", start["protocol_ver"])
	require.Equal(t, "alice@example.com logged in to web-1 as deploy (token)", start["message"])
	require.Equal(t, "u-alice", start["actor"].(map[string]any)["user"].(map[string]any)["uid"])
	for _, rec := range recs {
		switch rec["metadata"].(map[string]any)["log_name"] {
		case "decision":
			if rec["activity_id"] == 5.0 {
				require.Contains(t, []any{"no recursive deletes on production", "not the host's secrets"}, rec["status_detail"])
			}
		case "ssh.request":
			require.Contains(t, rec["message"], "request ")
		case "ssh.file":
			require.Equal(t, map[string]any{"name": "config.yml", "path": "/srv/app/config.yml", "size": 1234.0, "type_id": 1.0,
				"hashes": []any{map[string]any{"algorithm_id": 3.0, "algorithm": "SHA-256", "value": "abababababababababababababababababababababababababababababababab"}}}, rec["file"])
			require.Equal(t, map[string]any{"bytes_in": 1234.0, "bytes_out": 0.0, "bytes": 1234.0}, rec["traffic"])
		case "session.end":
			require.Equal(t, map[string]any{"bytes_in": 2000.0, "bytes_out": 9000.0, "bytes": 11000.0}, rec["traffic"])
			require.Equal(t, "client_closed", rec["status_detail"])
		}
	}

	// Refusals before a session, the gateway ending one, a transfer cut off out of order.
	ev := func(p schemas.Payload) *schemas.Event {
		return &schemas.Event{ID: "x", Type: p.EventType(), SessionID: "s", Resource: "web-1", Payload: p.AppendJSON(nil)}
	}
	rec := roundTrip(t, OCSF(ev(&schemas.AuthFailed{Protocol: "ssh", ClientAddr: "10.0.0.9:2222", Check: "signature", Message: "the token's signature does not verify"})))
	require.Equal(t, []any{4007.0, 5.0, "Refuse", 2.0, "signature: the token's signature does not verify"}, []any{rec["class_uid"], rec["activity_id"], rec["activity_name"], rec["status_id"], rec["status_detail"]})
	rec = roundTrip(t, OCSF(ev(&schemas.AuthFailed{Protocol: "ssh", Check: "backend", Message: "host unreachable"})))
	require.Equal(t, []any{4.0, "Fail"}, []any{rec["activity_id"], rec["activity_name"]})
	rec = roundTrip(t, OCSFProtocol(ev(&schemas.SessionTerminated{Cause: "revoked", Revocation: "session:s", Reason: "INC-7"}), "ssh"))
	require.Equal(t, []any{3.0, "Reset", "revoked session:s INC-7"}, []any{rec["activity_id"], rec["activity_name"], rec["status_detail"]})
	rec = roundTrip(t, OCSF(ev(&schemas.SshFile{Path: "/x", Direction: "download", Size: 5, Sha256: "ff", Sequential: false, Complete: false})))
	require.NotContains(t, rec["file"], "hashes", "the hash of bytes out of order is not the file's")
	require.EqualValues(t, 2, rec["status_id"])
	rec = roundTrip(t, OCSF(ev(&schemas.SessionStart{Protocol: "ssh", AuthMethod: "certificate"})))
	require.Equal(t, []any{1.0, "Certificate Based"}, []any{rec["auth_type_id"], rec["auth_type"]})

	// Without the session's protocol, a decision keeps PostgreSQL's mapping; PostgreSQL
	// sessions are unchanged.
	rec = roundTrip(t, OCSF(ev(&schemas.Decision{Effect: "deny"})))
	require.EqualValues(t, 2004, rec["class_uid"])
	rec = roundTrip(t, OCSFProtocol(ev(&schemas.SessionStart{Protocol: "postgres"}), "postgres"))
	require.EqualValues(t, 3002, rec["class_uid"])
}

func containsMapped[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func roundTrip(t *testing.T, rec map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(rec)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}
