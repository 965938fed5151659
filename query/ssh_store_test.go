package query

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/ingest"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb/chtest"
)

// An SSH session goes through ingest into ClickHouse 18.16 (the Debian package), next to a
// PostgreSQL one, and comes back out of every route: the list (protocol, login, counts,
// --protocol, --text over commands and paths), the replay (chain intact, the terminal
// byte for byte), the evidence reports (requests counted by outcome, the request text,
// privileged requests) and the OCSF export (SSH Activity; PostgreSQL unchanged).
func TestSSHSessionThroughTheStore(t *testing.T) {
	ctx := context.Background()
	ssh := sshEvents(t, "ssh-1")
	pg := pgEvents(t, "pg-1")
	conn, log := ingestSessions(t, ssh, pg)

	a := New(conn, "gh", nil, nil, log)

	// The list.
	list := func(q string) []Session {
		t.Helper()
		code, body := get(t, a.listSessions, "/api/v1/sessions?"+q)
		require.Equal(t, http.StatusOK, code, body)
		var out struct{ Sessions []Session }
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		return out.Sessions
	}
	ids := func(ss []Session) []string {
		out := []string{}
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	all := list("")
	require.Equal(t, []string{"ssh-1", "pg-1"}, ids(all))
	s := all[0]
	require.Equal(t, "ssh", s.Protocol)
	require.Equal(t, "deploy", s.Login)
	require.Equal(t, "alice@example.com", s.Name)
	require.Equal(t, uint64(16), s.Statements)
	require.Equal(t, uint64(2), s.Denied)
	require.Equal(t, uint64(1), s.Held)
	require.Equal(t, uint64(1), s.Approved)
	require.Equal(t, "postgres", all[1].Protocol)
	require.Empty(t, all[1].Login)
	require.Equal(t, []string{"ssh-1"}, ids(list("protocol=ssh")))
	require.Equal(t, []string{"pg-1"}, ids(list("protocol=postgres")))
	for q, want := range map[string][]string{
		"SYSTEMCTL restart": {"ssh-1"}, "config.yml": {"ssh-1"}, "/srv/b": {"ssh-1"}, "sftp": {"ssh-1"}, `"<done>"`: {"ssh-1"},
		"from orders": {"pg-1"}, "nothing like it": {},
	} {
		require.Equal(t, want, ids(list("text="+url.QueryEscape(q))), q)
	}
	require.Equal(t, []string{"ssh-1"}, ids(list("protocol=ssh&effect=approved")))
	// By label, as the session.start recorded the resource's (every one given must match).
	for q, want := range map[string][]string{
		"label=env=production": {"ssh-1"}, "label=team=orders": {"pg-1"}, "label=env=dev&label=team=orders": {"pg-1"},
		"label=env=production&label=team=orders": {}, "label=env=prod": {}, "label=env=dev&protocol=ssh": {},
	} {
		require.Equal(t, want, ids(list(q)), q)
	}
	code, body := get(t, a.listSessions, "/api/v1/sessions?label=production")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `label: \"production\" is not key=value`)
	code, body = get(t, a.listSessions, "/api/v1/sessions?protocol=telnet")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "protocol must be postgres, ssh, http or kubernetes")

	// The replay: every event, the chain intact, the terminal as it was sent.
	code, body = get(t, a.replay, "/api/v1/sessions/ssh-1", "id", "ssh-1")
	require.Equal(t, http.StatusOK, code, body)
	var r Replay
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.True(t, r.ChainOK, r.ChainError)
	require.Len(t, r.Events, len(ssh))
	replayed := SSHSessionOf(r.Events)
	require.Equal(t, sshTerminal(), string(replayed.Channels[0].Output()))
	var cast strings.Builder
	require.NoError(t, WriteAsciicast(&cast, replayed.Channels[0], AsciicastOptions{Input: true}))
	checkAsciicast(t, []byte(cast.String()))

	// The evidence: the SQL's request text is SSHRequestText's, for every request.
	rng := "date >= '2026-12-01' AND date <= '2026-12-10' AND time_us >= 0 AND time_us < 9999999999999999"
	texts, err := a.table(ctx, "SELECT toString(qid), fingerprint, kinds, toString(privileged) FROM ("+
		strings.ReplaceAll(replaceDB(statementsSQL, "gh"), "{range}", rng)+") WHERE session_id = 'ssh-1' ORDER BY qid")
	require.NoError(t, err)
	var want [][]string
	for i := range ssh {
		var p schemas.SshRequest
		if ssh[i].Type == schemas.TypeSshRequest && ssh[i].Decode(&p) == nil {
			kind := p.Request
			if kind == "sftp" {
				kind = "sftp_" + p.SftpOp
			}
			priv := map[string]string{"exec": "1", "shell": "1", "sftp_write": "1", "sftp_rename": "1"}[kind]
			if p.ChannelType == "direct-tcpip" {
				priv = "1"
			}
			if priv == "" {
				priv = "0"
			}
			want = append(want, []string{itoa(p.QueryID), SSHRequestText(&p), `["` + kind + `"]`, priv})
		}
	}
	require.Equal(t, want, texts)

	since, until := sshStart.Add(-time.Hour).Format(time.RFC3339), sshStart.Add(time.Hour).Format(time.RFC3339)
	report := func(kind string, extra string) []map[string]string {
		t.Helper()
		code, body := call(t, a, kind, "since="+since+"&until="+until+"&format=json"+extra)
		require.Equal(t, http.StatusOK, code, body)
		var out struct{ Rows []map[string]string }
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		return out.Rows
	}
	access := report("access", "")
	require.Len(t, access, 2)
	require.Equal(t, map[string]string{"identity": "alice@example.com", "subject": "u-alice", "on_behalf_of": "", "resource": "web-1", "sessions": "1",
		"statements": "16", "allowed": "13", "masked": "0", "denied": "2", "held": "1", "approved": "1", "approval_denied": "0", "approval_expired": "0",
		"approval_cancelled": "0", "approval_pending": "0", "held_no_outcome": "0", "no_decision": "0", "sessions_revoked": "0", "sessions_grant_expired": "0",
		"sessions_token_expired": "0", "sessions_ended_other": "0", "first": "2026-12-05 09:00:00", "last": access[1]["last"]}, access[1])

	denials := report("denials", "")
	require.Len(t, denials, 2)
	for i, w := range [][3]string{{"rm -rf /var/lib/app", "no-rm-rf", "no recursive deletes on production"}, {"sftp read /etc/shadow", "no-secrets", "not the host's secrets"}} {
		require.Equal(t, "ssh-1", denials[i]["session"])
		require.Equal(t, "denied", denials[i]["outcome"])
		require.Equal(t, w[0], denials[i]["fingerprint"], "the request itself")
		require.Equal(t, w[1], denials[i]["rule"])
		require.Equal(t, w[2], denials[i]["reason"])
	}

	priv := report("privileged", "")
	var got [][3]string
	for _, r := range priv {
		got = append(got, [3]string{r["kinds"], r["outcome"], r["approved_by"]})
	}
	require.Equal(t, [][3]string{
		{`["shell"]`, "allowed", ""}, {`["exec"]`, "approved", "bob@example.com"}, {`["exec"]`, "denied", ""},
		{`["sftp_write"]`, "allowed", ""}, {`["sftp_rename"]`, "allowed", ""}, {`["open"]`, "allowed", ""}, {`["exec"]`, "allowed", ""},
	}, got)
	require.Equal(t, "7", priv[1]["seconds_to_approve"])

	// The OCSF export: SSH Activity for the SSH session (its decisions and end found to be
	// SSH by the session's start), PostgreSQL's classes for the other.
	code, body = get(t, a.export, "/api/v1/export?format=ocsf&limit=10000")
	require.Equal(t, http.StatusOK, code, body)
	classes := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Class    int    `json:"class_uid"`
			Activity int    `json:"activity_id"`
			Status   int    `json:"status_id"`
			Detail   string `json:"status_detail"`
			Metadata struct {
				LogName     string `json:"log_name"`
				Correlation string `json:"correlation_uid"`
			}
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		k := rec.Metadata.Correlation + " " + rec.Metadata.LogName
		classes[k] = append(classes[k], itoa(uint64(rec.Class))+"/"+itoa(uint64(rec.Activity)))
		if rec.Metadata.Correlation == "ssh-1" && rec.Metadata.LogName == "decision" && rec.Activity == 5 {
			require.Equal(t, 2, rec.Status)
			require.Contains(t, []string{"no recursive deletes on production", "not the host's secrets"}, rec.Detail)
		}
	}
	require.Equal(t, []string{"4007/1"}, classes["ssh-1 session.start"])
	require.Equal(t, []string{"4007/2"}, classes["ssh-1 session.end"])
	require.Contains(t, classes["ssh-1 decision"], "4007/5")
	require.Contains(t, classes["ssh-1 decision"], "4007/99")
	require.Contains(t, classes["ssh-1 ssh.file"], "4007/6")
	require.Equal(t, []string{"3002/1"}, classes["pg-1 session.start"])
	require.Equal(t, []string{"3003/2"}, classes["pg-1 decision"])
	require.Equal(t, []string{"3002/2"}, classes["pg-1 session.end"])
}

// ingestSessions runs ingest from a test NATS into a ClickHouse 18.16 of its own, publishes
// the sessions' events to GH_AUDIT and waits until the store has them all.
func ingestSessions(t *testing.T, sessions ...[]schemas.Event) (driver.Conn, *slog.Logger) {
	t.Helper()
	ctx := context.Background()
	b := bustest.Connect(t)
	chs := chtest.Start(t)
	conn, err := ingest.Open(config.ClickHouse{Address: chs.Addr(), Username: "default"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in := ingest.New(ingest.Config{Database: "gh", BatchSize: 50, FlushInterval: 50 * time.Millisecond}, b.JS, conn, prometheus.NewRegistry(), log)
	require.NoError(t, in.Start(ctx))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = in.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	total := 0
	for _, events := range sessions {
		var msg []byte
		for i := range events {
			msg = append(events[i].AppendJSON(msg), '\n')
		}
		_, err := b.JS.Publish(ctx, bus.AuditSubject(events[0].Resource, events[0].SessionID, "batch"), msg)
		require.NoError(t, err)
		total += len(events)
	}
	require.Eventually(t, func() bool {
		var n uint64
		return conn.QueryRow(ctx, "SELECT count() FROM gh.events").Scan(&n) == nil && n == uint64(total)
	}, 30*time.Second, 50*time.Millisecond)
	return conn, log
}

// pgEvents is a PostgreSQL session of one statement, chained.
func pgEvents(t *testing.T, session string) []schemas.Event {
	id := schemas.Identity{Subject: "svc", Issuer: "iss", Kind: "service"}
	var out []schemas.Event
	prev := ""
	for i, p := range []schemas.Payload{
		&schemas.SessionStart{Labels: []string{"env=dev", "team=orders"}, Protocol: "postgres", ClientAddr: "127.0.0.1:5000", AuditMode: "strict"},
		&schemas.DbQuery{QueryID: 1, SQL: "select * from orders", Protocol: "simple"},
		&schemas.Decision{QueryID: 1, Effect: "allow", Kinds: []string{"select"}},
		&schemas.SessionEnd{Reason: "client_closed", Statements: 1},
	} {
		e := schemas.Event{ID: session + "-" + itoa(uint64(i+1)), Type: p.EventType(), Code: schemas.Codes[p.EventType()], Time: sshStart.Add(-time.Minute + time.Duration(i)*time.Second),
			SessionID: session, Seq: uint64(i + 1), Identity: id, Resource: "demo", PrevHash: prev, Payload: p.AppendJSON(nil)}
		h, err := e.ComputeHash()
		require.NoError(t, err)
		e.Hash, prev = h, h
		out = append(out, e)
	}
	return out
}

// get runs a handler on GET target (with path parameters as name, value pairs) and
// returns the status and body.
func get(t *testing.T, h echo.HandlerFunc, target string, params ...string) (int, string) {
	t.Helper()
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, target, nil), rec)
	for i := 0; i+1 < len(params); i += 2 {
		c.SetParamNames(params[i])
		c.SetParamValues(params[i+1])
	}
	if err := h(c); err != nil {
		e.HTTPErrorHandler(err, c)
	}
	return rec.Code, rec.Body.String()
}
