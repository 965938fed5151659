package mcp

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestLimiterWindowsPerAgent(t *testing.T) {
	l := newLimiter(2, 5, 1)
	require.True(t, l.session("a", time.Date(2026, 12, 3, 10, 0, 30, 0, time.UTC)))
	require.False(t, l.session("a", time.Date(2026, 12, 3, 10, 0, 30, 0, time.UTC)), "one new session a minute")
	now := time.Date(2026, 12, 3, 10, 0, 30, 0, time.UTC)
	require.True(t, l.call("a", now))
	require.True(t, l.call("a", now))
	require.False(t, l.call("a", now), "a third call in the minute")
	require.True(t, l.call("b", now), "another agent has its own budget")
	require.True(t, l.call("a", now.Add(31*time.Second)), "a new minute")

	require.Equal(t, 5, l.rowsLeft("a", now))
	l.tookRows("a", now, 4)
	require.Equal(t, 1, l.rowsLeft("a", now))
	l.tookRows("a", now, 3)
	require.Equal(t, 0, l.rowsLeft("a", now), "never negative")
	require.Equal(t, 5, l.rowsLeft("a", now.Add(time.Hour)), "a new hour")

	for i := 0; i < l.requestsPerMinute(); i++ {
		require.True(t, l.request("c", now))
	}
	require.False(t, l.request("c", now))
}

func TestProxyErrorsForAgents(t *testing.T) {
	id := "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	for _, tc := range []struct {
		err                        *pgconn.PgError
		status, decision, approval string
	}{
		{&pgconn.PgError{Code: "42501", Message: "Gatehouse denied the statement (policy p, rule r): no"}, StatusDenied, "deny", ""},
		{&pgconn.PgError{Code: "42501", Message: "Gatehouse: approval " + id + " denied by approver-1: not now", Detail: "approval " + id}, StatusDenied, "require_approval", id},
		{&pgconn.PgError{Code: "42501", Message: "Gatehouse: approval required; requested as " + id + " (approvers: a). Run the identical statement again within 1h0m0s of its approval."}, StatusDenied, "require_approval", id},
		{&pgconn.PgError{Code: "57014", Message: "Gatehouse: approval " + id + " expired", Detail: "approval " + id}, StatusExpired, "require_approval", id},
		{&pgconn.PgError{Code: "42501", Message: "permission denied for table pg_authid"}, StatusError, "", ""},
		{&pgconn.PgError{Code: "42601", Message: "syntax error at or near \"selec\""}, StatusError, "", ""},
		{&pgconn.PgError{Code: "28P01", Message: "token rejected: token is expired"}, StatusDenied, "", ""},
	} {
		r := pgResult(tc.err)
		require.Equal(t, tc.status, r.Status, tc.err.Message)
		require.Equal(t, tc.decision, r.decision, tc.err.Message)
		require.Equal(t, tc.approval, r.ApprovalID, tc.err.Message)
		require.Equal(t, tc.err.Code, r.SQLState)
	}
}

func TestApprovalNotice(t *testing.T) {
	id := "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	m := approvalNotice.FindStringSubmatch("Gatehouse: waiting for approval " + id + " (policy p, rule r: why); approvers: a; deadline x")
	require.Equal(t, id, m[1])
	require.Nil(t, approvalNotice.FindStringSubmatch("waiting for approval "+id+" (forged, without the prefix)"))
}

func TestParkingBoundPerAgent(t *testing.T) {
	p := newParking(1, time.Minute)
	e1 := &execution{done: make(chan Result, 1), stop: func() {}}
	require.True(t, p.park("a", "id1", "app/1", e1))
	require.False(t, p.park("a", "id2", "app/2", &execution{done: make(chan Result, 1), stop: func() {}}), "one waiting at most")
	require.True(t, p.park("b", "id2", "app/2", &execution{done: make(chan Result, 1), stop: func() {}}), "per agent")
	r, _, ok := p.status("a", "id1")
	require.True(t, ok)
	require.Nil(t, r, "still waiting")
	_, _, ok = p.status("b", "id1")
	require.False(t, ok, "another agent's approval is not found")
	e1.done <- Result{Status: StatusOK}
	require.Eventually(t, func() bool { r, _, _ := p.status("a", "id1"); return r != nil }, 5*time.Second, 10*time.Millisecond)
	require.True(t, p.park("a", "id3", "app/3", &execution{done: make(chan Result, 1), stop: func() {}}), "the decided one no longer counts")
}

func TestSplitURL(t *testing.T) {
	o, p := splitURL("https://gw.example.com:8443/mcp")
	require.Equal(t, "https://gw.example.com:8443", o)
	require.Equal(t, "/mcp", p)
	o, p = splitURL("http://127.0.0.1:8080")
	require.Equal(t, "http://127.0.0.1:8080", o)
	require.Equal(t, "", p)
}

// The session limit counts what the SDK will see: a body whose keys repeat in another case
// is refused, not read as Go's decoder reads it (the attacker's "method":"initialize",
// "METHOD":"ping" opened uncounted sessions).
func TestJSONMethodsRefusesAmbiguousBodies(t *testing.T) {
	m, err := jsonMethods([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"a":{"method":"x"}}}`))
	require.NoError(t, err)
	require.Equal(t, []string{"initialize"}, m)
	m, err = jsonMethods([]byte(`[{"method":"ping"},{"method":"initialize"}]`))
	require.NoError(t, err)
	require.Equal(t, []string{"ping", "initialize"}, m)
	for _, body := range []string{
		`{"method":"initialize","METHOD":"ping"}`,
		`{"method":"initialize","method":"ping"}`,
		`{"Method":"ping","method":"initialize"}`,
		`[{"method":"ping"},{"method":"initialize","mEthod":"ping"}]`,
	} {
		_, err := jsonMethods([]byte(body))
		require.Error(t, err, body)
	}
	m, err = jsonMethods([]byte(`not json`))
	require.NoError(t, err, "left to the SDK, which refuses it")
	require.Empty(t, m)
}

// Rows are set aside before a statement runs: calls at once cannot together pass the
// hour's limit (the attacker's 10 parallel calls got 11,200 of 10,000).
func TestReserveRowsBoundsConcurrentCalls(t *testing.T) {
	l := newLimiter(100, 1000, 10)
	now := time.Now()
	var wg sync.WaitGroup
	var granted atomic.Int64
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			granted.Add(int64(l.reserveRows("a", now, 200)))
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1000), granted.Load())
	require.Equal(t, 0, l.rowsLeft("a", now))
	l.tookRows("a", now, -150) // unused rows given back
	require.Equal(t, 150, l.rowsLeft("a", now))
}

func TestStatementsCountsWhatTheScannerSeparates(t *testing.T) {
	for sql, want := range map[string]int{
		"select 1":                                1,
		"select 1;":                               1,
		" select 1 ; -- done\n":                   1,
		"select ';' || $$;$$, \"a;b\"":            1,
		"select 1; select 2":                      2,
		"select 1;/* c */select 2":                2,
		"/* ; */ select 1":                        1,
		"select 'unterminated":                    0,
		"select 1 -- ; select 2":                  1,
		"select id, card_number from c; select 1": 2,
	} {
		require.Equal(t, want, statements(sql), sql)
	}
}
