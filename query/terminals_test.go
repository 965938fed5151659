package query

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

// A session's recorded terminals are listed (SSH channels with output, Kubernetes execs)
// and each comes out as asciicast v2, byte for byte what the CLI writes from the replay
// (WriteAsciicast over SSHSessionOf or HTTPSessionOf of the replayed events, with the same
// title); an unknown session or channel is a 404 that says what there is.
func TestTerminalsAndAsciicastThroughTheStore(t *testing.T) {
	conn, log := ingestSessions(t, sshEvents(t, "ssh-1"), kubeEvents(t, "kube-1"), pgEvents(t, "pg-1"))
	a := New(conn, "gh", nil, nil, log)

	replayed := func(id string) Replay {
		t.Helper()
		code, body := get(t, a.replay, "/api/v1/sessions/"+id, "id", id)
		require.Equal(t, http.StatusOK, code, body)
		var r Replay
		require.NoError(t, json.Unmarshal([]byte(body), &r))
		return r
	}
	list := func(id string) []TerminalRecording {
		t.Helper()
		code, body := get(t, a.terminals, "/api/v1/sessions/"+id+"/terminals", "id", id)
		require.Equal(t, http.StatusOK, code, body)
		var out struct {
			SessionID string              `json:"session_id"`
			Terminals []TerminalRecording `json:"terminals"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		require.Equal(t, id, out.SessionID)
		require.NotNil(t, out.Terminals)
		return out.Terminals
	}
	cast := func(id, q string) (*httptest.ResponseRecorder, string) {
		t.Helper()
		e := echo.New()
		rec := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/v1/sessions/"+id+"/asciicast?"+q, nil), rec)
		c.SetParamNames("id")
		c.SetParamValues(id)
		if err := a.asciicast(c); err != nil {
			e.HTTPErrorHandler(err, c)
		}
		return rec, rec.Body.String()
	}

	// SSH: the shell (0) and the approved exec (1); the others have no output.
	ssh := SSHSessionOf(replayed("ssh-1").Events)
	ts := list("ssh-1")
	require.Len(t, ts, 2)
	require.Equal(t, uint64(0), ts[0].Channel)
	require.Equal(t, "ssh", ts[0].Kind)
	require.Equal(t, "shell", ts[0].Command)
	require.Equal(t, AsciicastTitle(ssh, ssh.Channels[0]), ts[0].Title)
	require.Equal(t, ssh.Channels[0].Describe(), ts[0].Description)
	require.Equal(t, ssh.Channels[0].Opened.UTC(), ts[0].Start)
	require.Equal(t, []uint32{100, 30}, []uint32{ts[0].Cols, ts[0].Rows})
	require.Equal(t, len(ssh.Channels[0].Frames), ts[0].Frames)
	require.Equal(t, ssh.Channels[0].Duration().Seconds(), ts[0].DurationSeconds)
	require.True(t, ts[0].Input)
	require.Equal(t, uint64(1), ts[1].Channel)
	require.Equal(t, `sudo systemctl restart nginx && echo "<done>"`, ts[1].Command)
	require.False(t, ts[1].Input)

	for _, input := range []bool{false, true} {
		q := "channel=0"
		if input {
			q += "&input=1"
		}
		rec, body := cast("ssh-1", q)
		require.Equal(t, http.StatusOK, rec.Code, body)
		require.Equal(t, MIMEAsciicast, rec.Header().Get("Content-Type"))
		var want strings.Builder
		require.NoError(t, WriteAsciicast(&want, ssh.Channels[0], AsciicastOptions{Title: AsciicastTitle(ssh, ssh.Channels[0]), Input: input}))
		require.Equal(t, want.String(), body)
		_, lines := checkAsciicast(t, []byte(body))
		hasInput := false
		for _, l := range lines {
			hasInput = hasInput || l[1] == "i"
		}
		require.Equal(t, input, hasInput)
	}

	// Kubernetes: the exec of request 2.
	kube := HTTPSessionOf(replayed("kube-1").Events)
	ts = list("kube-1")
	require.Len(t, ts, 1)
	require.Equal(t, TerminalRecording{Channel: 2, Kind: "kubernetes", Title: KubeAsciicastTitle(kube, kube.Requests[1]), Description: kube.Requests[1].Describe(),
		Command: "sh", Start: kube.Requests[1].Time.UTC(), DurationSeconds: 1.5, Frames: 5, Cols: 120, Rows: 40, Input: true}, ts[0])
	rec, body := cast("kube-1", "channel=2&input=true")
	require.Equal(t, http.StatusOK, rec.Code, body)
	var want strings.Builder
	require.NoError(t, WriteAsciicast(&want, kube.Requests[1], AsciicastOptions{Title: KubeAsciicastTitle(kube, kube.Requests[1]), Input: true}))
	require.Equal(t, want.String(), body)

	// A PostgreSQL session has none; what is not there is a 404 saying what is.
	require.Empty(t, list("pg-1"))
	for _, c := range []struct{ id, q, msg string }{
		{"ssh-1", "channel=2", "session ssh-1 has no terminal recording on channel 2; channels with one: 0, 1"},
		{"ssh-1", "channel=9", "channels with one: 0, 1"},
		{"kube-1", "channel=1", "session kube-1 has no terminal recording on channel 1; channels with one: 2"},
		{"pg-1", "channel=0", "channels with one: none"},
		{"nope", "channel=0", `no session \"nope\"`},
	} {
		rec, body := cast(c.id, c.q)
		require.Equal(t, http.StatusNotFound, rec.Code, c)
		require.Contains(t, body, c.msg)
	}
	code, body := get(t, a.terminals, "/api/v1/sessions/nope/terminals", "id", "nope")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body, `no session \"nope\"`)
	for _, q := range []string{"", "channel=x", "channel=0&input=maybe"} {
		rec, _ := cast("ssh-1", q)
		require.Equal(t, http.StatusBadRequest, rec.Code, q)
	}
}
