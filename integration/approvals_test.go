package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/approvals"
	"github.com/gatehouse/gatehouse/cli"
)

// heldForApproval exercises statements that need an approval: held while the client waits,
// then run, denied, timed out, cancelled or abandoned; and fail-fast approvals.
func heldForApproval(t *testing.T, g *gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dba := g.token(t, "dba-oncall", "dba", "approvers") // an approver too: still not for their own requests
	approver := g.token(t, "approver-1", "approvers")
	gh := func(token string, args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append(args, "--url", g.approvalsAPI, "--token", token), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	list := func(all bool) []approvals.Approval {
		var out struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		args := []string{"approvals", "list"}
		if all {
			args = append(args, "--all")
		}
		require.NoError(t, g.cliJSONAt(t, g.approvalsAPI, approver, &out, args...))
		return out.Approvals
	}
	// pendingFor waits for the approval of a statement to show up.
	pendingFor := func(stmt string) approvals.Approval {
		var found approvals.Approval
		require.Eventually(t, func() bool {
			for _, a := range list(false) {
				if a.Request.Statement == stmt {
					found = a
					return true
				}
			}
			return false
		}, 20*time.Second, 20*time.Millisecond, "no pending approval for %q", stmt)
		return found
	}
	status := func(id string) approvals.Approval {
		for _, a := range list(true) {
			if a.ID == id {
				return a
			}
		}
		return approvals.Approval{}
	}
	connect := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=dba password=%s sslmode=disable", g.pgHost, g.pgPort, dba))
		require.NoError(t, err)
		return c
	}
	nameOf := func(id int) string {
		d, err := pgconn.Connect(ctx, g.pg.SuperuserConnString("demo"))
		require.NoError(t, err)
		defer d.Close(ctx)
		r, err := d.Exec(ctx, fmt.Sprintf("select name from customers where id = %d", id)).ReadAll()
		require.NoError(t, err)
		return string(r[0].Rows[0][0])
	}

	// Approved: the client waits (told so by a notice), the statement runs once approved.
	c := connect()
	var notices []string
	c.Close(ctx)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=demo user=dba password=%s sslmode=disable", g.pgHost, g.pgPort, dba))
	require.NoError(t, err)
	noticeCh := make(chan string, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { noticeCh <- n.Message }
	c, err = pgconn.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	stmt := "update customers set name = 'Ada (approved)' where id = 1"
	done := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, stmt).ReadAll(); done <- err }()
	a := pendingFor(stmt)
	require.Equal(t, "dba-oncall", a.Requester.Subject)
	require.Equal(t, "customer-writes-need-approval", a.Request.Rule)
	notices = append(notices, <-noticeCh)
	require.Contains(t, notices[0], "waiting for approval "+a.ID)
	// Who sees it: its requester, its approvers, auditors; nobody else (not even that it
	// exists).
	visible := func(token string) (listed bool, got int) {
		var out struct {
			Approvals []approvals.Approval `json:"approvals"`
		}
		require.NoError(t, g.cliJSONAt(t, g.approvalsAPI, token, &out, "approvals", "list", "--all"))
		for _, x := range out.Approvals {
			listed = listed || x.ID == a.ID
		}
		req, err := http.NewRequest(http.MethodGet, g.approvalsAPI+"/api/v1/approvals/"+a.ID, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return listed, resp.StatusCode
	}
	for who, token := range map[string]string{"requester": g.token(t, "dba-oncall", "dba"), "approver": approver, "auditor": g.token(t, "auditor", "auditors")} {
		listed, code := visible(token)
		require.True(t, listed, who)
		require.Equal(t, http.StatusOK, code, who)
	}
	listed, got := visible(g.token(t, "svc-orders", "orders-readers"))
	require.False(t, listed, "a stranger does not see the approval or its statement")
	require.Equal(t, http.StatusNotFound, got)
	_, errOut, code := gh(dba, "approvals", "approve", a.ID)
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "the requester cannot approve their own request")
	require.Equal(t, "Ada Lovelace", nameOf(1), "nothing runs before the approval")
	clicked := time.Now()
	out, errOut, code := gh(approver, "approvals", "approve", a.ID, "--reason", "INC-42")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "approved (1 of 1 approvals)")
	require.NoError(t, <-done)
	t.Logf("approval to result: %v", time.Since(clicked))
	require.Equal(t, "Ada (approved)", nameOf(1))
	c.Close(ctx)

	// Denied: 42501 with the approver and the reason; nothing reaches the backend.
	c = connect()
	stmt = "update customers set name = 'Ada (denied)' where id = 1"
	go func() { _, err := c.Exec(ctx, stmt).ReadAll(); done <- err }()
	a = pendingFor(stmt)
	_, errOut, code = gh(approver, "approvals", "deny", a.ID, "--reason", "not during the freeze")
	require.Equal(t, 0, code, errOut)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, <-done, &pgErr)
	require.Equal(t, "42501", pgErr.Code)
	require.Equal(t, fmt.Sprintf("Gatehouse: approval %s denied by approver-1: not during the freeze", a.ID), pgErr.Message)
	require.Equal(t, "Ada (approved)", nameOf(1))
	// The session goes on.
	_, err = c.Exec(ctx, "select 1").ReadAll()
	require.NoError(t, err)

	// Cancelled by the client (CancelRequest, as pgx sends on a cancelled context).
	stmt = "update customers set name = 'Ada (cancelled)' where id = 1"
	qctx, qcancel := context.WithCancel(ctx)
	go func() { _, err := c.Exec(qctx, stmt).ReadAll(); done <- err }()
	a = pendingFor(stmt)
	qcancel()
	require.Error(t, <-done)
	require.Eventually(t, func() bool { s := status(a.ID); return s.Status == approvals.Cancelled && s.Closed == "cancel_request" }, 10*time.Second, 20*time.Millisecond)
	c.Close(ctx)

	// Abandoned: the client goes away while it waits (killed: no cancel request; pgconn
	// itself would send one when its connection breaks).
	stmt = "update customers set name = 'Ada (abandoned)' where id = 1"
	psql := exec.Command("psql", "-X", fmt.Sprintf("host=%s port=%s dbname=demo user=dba sslmode=disable", g.pgHost, g.pgPort), "-c", stmt)
	psql.Env = append(os.Environ(), "PGPASSWORD="+dba)
	require.NoError(t, psql.Start())
	a = pendingFor(stmt)
	require.NoError(t, psql.Process.Kill())
	_ = psql.Wait()
	var last approvals.Approval
	require.Eventually(t, func() bool {
		s := status(a.ID)
		last = s
		return s.Status == approvals.Cancelled && s.Closed == "client_disconnected"
	}, 10*time.Second, 20*time.Millisecond, "last seen: %+v", &last)
	_, _, code = gh(approver, "approvals", "approve", a.ID)
	require.NotEqual(t, 0, code, "a cancelled request cannot be approved")
	require.Equal(t, "Ada (approved)", nameOf(1))

	// Timed out, and fail-fast: rules applied live with short deadlines.
	admin := g.token(t, "admin", "gatehouse-admins")
	f := filepath.Join(t.TempDir(), "p.yaml")
	require.NoError(t, os.WriteFile(f, []byte(`
policies:
  - name: approval-tests
    resources: [demo]
    rules:
      - name: inserts-need-approval
        effect: require_approval
        when: '"dba" in identity.groups && "insert" in request.sql.kinds && "public.orders" in request.sql.tables_written'
        approval: {approvers: [approvers], timeout: 1s}
      - name: batch-deletes
        effect: require_approval
        when: '"dba" in identity.groups && "delete" in request.sql.kinds && "public.orders" in request.sql.tables_written'
        approval: {approvers: [approvers], mode: fail_fast, window: 1m}
      - name: customer-cursors
        effect: require_approval
        when: '"dba" in identity.groups && "declare_cursor" in request.sql.kinds && "public.customers" in request.sql.tables'
        approval: {approvers: [approvers], mode: fail_fast, window: 1m}
`), 0o600))
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"policy", "apply", "-f", f, "--url", g.policyAPI, "--token", admin}, &stdout, &stderr), stderr.String())
	c = connect()
	defer c.Close(ctx)
	require.Eventually(t, func() bool {
		_, err := c.Exec(ctx, "insert into orders (customer_id, item, amount) values (1, 'timeout', 1)").ReadAll()
		return errors.As(err, &pgErr) && pgErr.Code == "57014"
	}, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, pgErr.Message, "was not granted before its deadline")

	del := "delete from orders where item = 'nothing like this'"
	_, err = c.Exec(ctx, del).ReadAll()
	require.ErrorAs(t, err, &pgErr)
	require.Contains(t, pgErr.Message, "approval required; requested as ")
	id := strings.TrimPrefix(pgErr.Detail, "approval ")
	_, err = c.Exec(ctx, del).ReadAll()
	require.ErrorAs(t, err, &pgErr)
	require.Contains(t, pgErr.Message, "approval "+id+" is still pending")
	_, errOut, code = gh(approver, "approvals", "approve", id)
	require.Equal(t, 0, code, errOut)
	_, err = c.Exec(ctx, del).ReadAll()
	require.NoError(t, err, "the identical statement runs once after approval")
	_, err = c.Exec(ctx, del).ReadAll()
	require.ErrorAs(t, err, &pgErr, "and only once")
	require.Contains(t, pgErr.Message, "approval required; requested as ")

	// A statement run by name needs the approval the statement itself needs, and the
	// approvers see what it runs: PREPARE (a delete, approved), then EXECUTE.
	approveFailFast := func(sql string) approvals.Approval {
		t.Helper()
		_, err := c.Exec(ctx, sql).ReadAll()
		require.ErrorAs(t, err, &pgErr, sql)
		require.Contains(t, pgErr.Message, "approval required; requested as ", sql)
		id := strings.TrimPrefix(pgErr.Detail, "approval ")
		_, errOut, code := gh(approver, "approvals", "approve", id)
		require.Equal(t, 0, code, errOut)
		_, err = c.Exec(ctx, sql).ReadAll()
		require.NoError(t, err, "%s runs once approved", sql)
		return status(id)
	}
	prep := "PREPARE del_nothing AS delete from orders where item = 'prepared nothing'"
	approveFailFast(prep)
	a = approveFailFast("EXECUTE del_nothing")
	require.Equal(t, "EXECUTE del_nothing\n-- runs: "+prep, a.Request.Statement)
	_, err = c.Exec(ctx, "EXECUTE del_nothing").ReadAll()
	require.ErrorAs(t, err, &pgErr, "an approval of EXECUTE is used once")
	require.Contains(t, pgErr.Message, "approval required; requested as ")
	// Through the extended protocol (drivers send EXECUTE as a Parse of its own, decided
	// again at its Execute): the approval covers that one execution.
	execExtended := func() error { return c.ExecParams(ctx, "EXECUTE del_nothing", nil, nil, nil, nil).Read().Err }
	require.ErrorAs(t, execExtended(), &pgErr)
	require.Contains(t, pgErr.Message, "is still pending")
	a = pendingFor("EXECUTE del_nothing\n-- runs: " + prep)
	_, errOut, code = gh(approver, "approvals", "approve", a.ID)
	require.Equal(t, 0, code, errOut)
	require.NoError(t, execExtended(), "the approved EXECUTE runs through the extended protocol")
	require.ErrorAs(t, execExtended(), &pgErr, "once")
	require.Contains(t, pgErr.Message, "approval required; requested as ")

	// A cursor declared with an approval is read page by page (as psql's FETCH_COUNT does)
	// on that approval: its FETCHes are that one execution.
	approveFailFast("BEGIN; DECLARE cc NO SCROLL CURSOR FOR select id from customers order by id")
	for range 2 {
		rs, err := c.Exec(ctx, "FETCH FORWARD 1 FROM cc").ReadAll()
		require.NoError(t, err, "FETCH from the approved cursor")
		require.Len(t, rs[0].Rows, 1)
	}
	_, err = c.Exec(ctx, "CLOSE cc; COMMIT").ReadAll()
	require.NoError(t, err)
}

// revocations revokes an identity through the CLI: its open session ends with the reason,
// new ones are refused, and lifting the revocation lets it back in.
func revocations(t *testing.T, g *gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := g.token(t, "admin", "gatehouse-admins")
	svc := g.token(t, "svc-orders", "orders-readers")
	gh := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append(args, "--url", g.policyAPI, "--token", admin), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	conn := func() (*pgconn.PgConn, error) {
		return pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=svc-orders password=%s sslmode=disable", g.pgHost, g.pgPort, svc))
	}
	c, err := conn()
	require.NoError(t, err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "select count(*) from orders").ReadAll()
	require.NoError(t, err)

	out, errOut, code := gh("revoke", "--identity", "svc-orders", "--reason", "key leaked (INC-9)", "--for", "10m")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "revoked identity svc-orders until ")
	var pgErr *pgconn.PgError
	require.Eventually(t, func() bool {
		_, err := c.Exec(ctx, "select count(*) from orders").ReadAll()
		return err != nil && c.IsClosed()
	}, 10*time.Second, 10*time.Millisecond)
	_, err = conn()
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "28000", pgErr.Code)
	require.Contains(t, pgErr.Message, "access revoked for svc-orders by admin")
	require.Eventually(t, func() bool {
		out, _, code := gh("revocations")
		return code == 0 && strings.Contains(out, "key leaked (INC-9)")
	}, 10*time.Second, 20*time.Millisecond, "gatehouse revocations lists it")

	_, errOut, code = gh("revoke", "--identity", "svc-orders", "--lift", "--reason", "key rotated (INC-9)")
	require.Equal(t, 0, code, errOut)
	require.Eventually(t, func() bool {
		c, err := conn()
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// timeBoxedGrant asks for the dba role for a few seconds: once approved the caller's
// statements run under it (card numbers in the clear); at expiry the session that used it
// ends and the rights are gone.
func timeBoxedGrant(t *testing.T, g *gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svc := g.token(t, "svc-orders", "orders-readers")
	approver := g.token(t, "approver-1", "approvers")
	gh := func(token string, args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := cli.Main(append(args, "--url", g.approvalsAPI, "--token", token), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=svc-orders password=%s sslmode=disable", g.pgHost, g.pgPort, svc))
	require.NoError(t, err)
	defer c.Close(ctx)
	card := func() (string, error) {
		r, err := c.Exec(ctx, "select card_number from customers where id = 2").ReadAll()
		if err != nil {
			return "", err
		}
		return string(r[0].Rows[0][0]), nil
	}
	v, err := card()
	require.NoError(t, err)
	require.Equal(t, "************5559", v, "masked without a grant")

	_, errOut, code := gh(svc, "grants", "request", "--resource", "demo", "--role", "dba", "--for", "9h", "--reason", "INC-123")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "longer than role dba allows (8h0m0s)")
	out, errOut, code := gh(svc, "grants", "request", "--resource", "demo", "--role", "dba", "--for", "15s", "--reason", "INC-123")
	require.Equal(t, 0, code, errOut)
	id := strings.Fields(strings.SplitN(out, "approval ", 2)[1])[0]
	_, errOut, code = gh(approver, "approvals", "approve", id)
	require.Equal(t, 0, code, errOut)
	// The grant lasts 15 s from its approval: long enough to be seen in use on a loaded
	// machine (a 4-s grant expired unseen once in CI, two ingest copies and all).
	require.Eventually(t, func() bool { v, err := card(); return err == nil && v == "5500005555555559" }, 10*time.Second, 20*time.Millisecond,
		"the grant takes effect on the open session's next statement")
	out, _, code = gh(svc, "grants", "list")
	require.Equal(t, 0, code)
	require.Contains(t, out, id)
	require.Contains(t, out, "approver-1")

	// At expiry the session that used the grant ends; a new one is masked again.
	var pgErr *pgconn.PgError
	require.Eventually(t, func() bool { _, err := card(); return err != nil && c.IsClosed() }, 45*time.Second, 50*time.Millisecond)
	c2, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=demo user=svc-orders password=%s sslmode=disable", g.pgHost, g.pgPort, svc))
	require.NoError(t, err)
	defer c2.Close(ctx)
	r, err := c2.Exec(ctx, "select card_number from customers where id = 2").ReadAll()
	if errors.As(err, &pgErr) {
		t.Fatalf("unexpected error: %v", pgErr)
	}
	require.NoError(t, err)
	require.Equal(t, "************5559", string(r[0].Rows[0][0]))
}
