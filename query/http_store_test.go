package query

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// An HTTP session and a Kubernetes one go through ingest into ClickHouse 18.16 next to
// an SSH one, and come back out: the list (protocol, with and without a session.start;
// request counts; --protocol; --text over paths, query strings and request bodies), the
// replay (chain intact, the exec's terminal byte for byte), and the OCSF export (HTTP
// Activity, API Activity; a Kubernetes session's responses found to be Kubernetes by its
// session.start).
func TestHTTPSessionsThroughTheStore(t *testing.T) {
	h := httpEvents(t, "http-1")
	k := kubeEvents(t, "kube-1")
	conn, log := ingestSessions(t, h, k, sshEvents(t, "ssh-1"))
	a := New(conn, "gh", nil, nil, log)

	list := func(q string) map[string]Session {
		t.Helper()
		code, body := get(t, a.listSessions, "/api/v1/sessions?"+q)
		require.Equal(t, http.StatusOK, code, body)
		var out struct{ Sessions []Session }
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		m := map[string]Session{}
		for _, s := range out.Sessions {
			m[s.ID] = s
		}
		return m
	}
	ids := func(m map[string]Session) []string {
		out := []string{}
		for id := range m {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	all := list("")
	require.Equal(t, "http", all["http-1"].Protocol)
	require.Equal(t, "kubernetes", all["kube-1"].Protocol)
	require.Equal(t, uint64(4), all["http-1"].Statements)
	require.Equal(t, uint64(1), all["http-1"].Denied)
	require.Equal(t, uint64(1), all["http-1"].Held)
	require.Equal(t, uint64(1), all["http-1"].Approved)
	require.Equal(t, uint64(1), all["http-1"].Masked)
	require.Equal(t, uint64(2), all["kube-1"].Statements)
	require.Equal(t, []string{"http-1"}, ids(list("protocol=http")))
	require.Equal(t, []string{"kube-1"}, ids(list("protocol=kubernetes")))
	require.Equal(t, []string{"ssh-1"}, ids(list("protocol=ssh")))
	for q, want := range map[string][]string{
		"/ORDERS/7": {"http-1"}, "expand=items": {"http-1"}, `"note":"rush"`: {"http-1"}, "/exec": {"kube-1"},
		"command=sh": {"kube-1"}, "SYSTEMCTL": {"ssh-1"}, "****1111": {}, "nothing like it": {},
	} {
		require.Equal(t, want, ids(list("text="+url.QueryEscape(q))), q)
	}

	// The replay: the chain intact, the exec's terminal as it was sent.
	for _, c := range []struct {
		id     string
		events int
	}{{"http-1", len(h)}, {"kube-1", len(k)}} {
		code, body := get(t, a.replay, "/api/v1/sessions/"+c.id, "id", c.id)
		require.Equal(t, http.StatusOK, code, body)
		var r Replay
		require.NoError(t, json.Unmarshal([]byte(body), &r))
		require.True(t, r.ChainOK, r.ChainError)
		require.Len(t, r.Events, c.events)
		require.True(t, IsHTTP(r.Events))
	}
	code, body := get(t, a.replay, "/api/v1/sessions/kube-1", "id", "kube-1")
	require.Equal(t, http.StatusOK, code)
	var r Replay
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	s := HTTPSessionOf(r.Events)
	require.Equal(t, "# uname\r\nLinux\r\n# ", string(s.Requests[1].Terminal().Output()))

	// The export.
	code, body = get(t, a.export, "/api/v1/export?format=ocsf&limit=10000")
	require.Equal(t, http.StatusOK, code, body)
	classes := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Class    int `json:"class_uid"`
			Activity int `json:"activity_id"`
			Metadata struct {
				LogName     string `json:"log_name"`
				Correlation string `json:"correlation_uid"`
			}
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		key := rec.Metadata.Correlation + " " + rec.Metadata.LogName
		classes[key] = append(classes[key], itoa(uint64(rec.Class))+"/"+itoa(uint64(rec.Activity)))
	}
	require.Equal(t, []string{"4002/3", "4002/6", "4002/2", "4002/3"}, classes["http-1 http.request"])
	require.Equal(t, []string{"4002/99", "4002/99", "4002/99", "4002/99"}, classes["http-1 decision"])
	require.Equal(t, []string{"3002/1"}, classes["http-1 session.start"])
	require.Equal(t, []string{"6003/2", "6003/1"}, classes["kube-1 http.request"])
	require.Equal(t, []string{"6003/99", "6003/99"}, classes["kube-1 http.done"], "a Kubernetes session's by its start")
	require.Equal(t, []string{"6003/99", "6003/99"}, classes["kube-1 kube.io"])
	require.Equal(t, []string{"6003/99", "6003/99"}, classes["kube-1 decision"])
	require.Equal(t, []string{"4007/1"}, classes["ssh-1 session.start"])
}
