package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/proxy/postgres"
	"github.com/gatehouse/gatehouse/services/config"
)

// tableMaskRules apply to resource app-tables: card numbers are masked in what reads the
// customers table, decided by the statement's tables (as policy authors write it).
var tableMaskRules = []config.Rule{
	{Name: "cards-of-customers", Effect: "mask", When: `"public.customers" in request.sql.tables`,
		Mask: &config.Mask{Columns: []string{"customers.card_number"}, Method: "redact"}},
	{Name: "no-contacts", Effect: "deny", When: `"public.contacts" in request.sql.tables`, Reason: "contacts are private"},
}

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "want SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pe.Code, pe.Message)
}

// TestNamedStatements: a name (prepared statement, cursor) is decided and masked by what
// it stands for on the backend, however it was made: the protocol, SQL PREPARE or DECLARE;
// a client cannot make the proxy believe it stands for something else.
func TestNamedStatements(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := func(t *testing.T) *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, env.connTo("app-tables", ""))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	const cardQuery = "select card_number from customers where id = 1"

	t.Run("a duplicate Parse is refused as PostgreSQL refuses it; the name keeps its statement", func(t *testing.T) {
		c := connect(t)
		_, err := c.Prepare(ctx, "s1", cardQuery, nil)
		require.NoError(t, err)
		_, err = c.Prepare(ctx, "s1", "select 'harmless'::text", nil)
		requireCode(t, err, "42P05")
		res := c.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Equal(t, "****", string(res.Rows[0][0]))
		// After a Close the name is free again.
		require.NoError(t, c.Deallocate(ctx, "s1"))
		_, err = c.Prepare(ctx, "s1", "select 'harmless'::text", nil)
		require.NoError(t, err)
		res = c.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Equal(t, "harmless", string(res.Rows[0][0]))
	})

	t.Run("PREPARE in SQL, then Parse of the same name, Bind and EXECUTE", func(t *testing.T) {
		c := connect(t)
		_, err := c.Exec(ctx, "PREPARE s2 AS "+cardQuery).ReadAll()
		require.NoError(t, err)
		_, err = c.Prepare(ctx, "s2", "select 'harmless'::text", nil)
		requireCode(t, err, "42P05")
		// The protocol can run a statement prepared in SQL; its rows are masked.
		res := c.ExecPrepared(ctx, "s2", nil, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Equal(t, "****", string(res.Rows[0][0]))
		// EXECUTE names no table; it is masked as the statement it runs.
		rs, err := c.Exec(ctx, "EXECUTE s2").ReadAll()
		require.NoError(t, err)
		require.Equal(t, "****", string(rs[0].Rows[0][0]))
		rs, err = c.Exec(ctx, "EXPLAIN (COSTS OFF) EXECUTE s2; EXECUTE s2").ReadAll()
		require.NoError(t, err)
		require.Equal(t, "****", string(rs[1].Rows[0][0]))
		// A statement of a refused table can be prepared only if PREPARE is allowed; its
		// EXECUTE is refused as the statement itself.
		_, err = c.Exec(ctx, "PREPARE s3 AS select note from contacts").ReadAll()
		requireCode(t, err, "42501")
	})

	t.Run("DEALLOCATE and DISCARD ALL free names, pipelined with the Parse that reuses them", func(t *testing.T) {
		c := connect(t)
		_, err := c.Exec(ctx, "PREPARE s4 AS "+cardQuery).ReadAll()
		require.NoError(t, err)
		// Sent together: the DEALLOCATE is done before the Parse is looked at.
		b := &pgconn.Batch{}
		b.ExecParams("DEALLOCATE s4", nil, nil, nil, nil)
		rs, err := c.ExecBatch(ctx, b).ReadAll()
		require.NoError(t, err)
		require.Len(t, rs, 1)
		_, err = c.Prepare(ctx, "s4", "select 'free again'::text", nil)
		require.NoError(t, err)
		res := c.ExecPrepared(ctx, "s4", nil, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Equal(t, "free again", string(res.Rows[0][0]))
		_, err = c.Exec(ctx, "DISCARD ALL").ReadAll()
		require.NoError(t, err)
		_, err = c.Prepare(ctx, "s4", cardQuery, nil)
		require.NoError(t, err)
		res = c.ExecPrepared(ctx, "s4", nil, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Equal(t, "****", string(res.Rows[0][0]))
		// A DEALLOCATE that fails (in an aborted transaction) frees nothing.
		rs2, _ := c.Exec(ctx, "BEGIN; SELECT 1/0").ReadAll()
		require.NotEmpty(t, rs2)
		_, err = c.Exec(ctx, "DEALLOCATE s4").ReadAll()
		requireCode(t, err, "25P02")
		_, err = c.Exec(ctx, "ROLLBACK").ReadAll()
		require.NoError(t, err)
		_, err = c.Prepare(ctx, "s4", "select 'harmless'::text", nil)
		requireCode(t, err, "42P05")
	})

	t.Run("cursors: FETCH is masked as the DECLARE it reads; a cursor cannot be Executed unbound", func(t *testing.T) {
		c := connect(t)
		rs, err := c.Exec(ctx, "BEGIN; DECLARE cur CURSOR FOR "+cardQuery+"; FETCH ALL FROM cur").ReadAll()
		require.NoError(t, err)
		require.Equal(t, "****", string(rs[2].Rows[0][0]))
		_, err = c.Exec(ctx, "ROLLBACK").ReadAll()
		require.NoError(t, err)

		// pgx runs everything through the extended protocol.
		pc, err := pgx.Connect(ctx, env.connTo("app-tables", ""))
		require.NoError(t, err)
		defer pc.Close(context.Background())
		tx, err := pc.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "DECLARE cur2 CURSOR FOR "+cardQuery)
		require.NoError(t, err)
		var got string
		require.NoError(t, tx.QueryRow(ctx, "FETCH NEXT FROM cur2").Scan(&got))
		require.Equal(t, "****", got)
		require.NoError(t, tx.Rollback(ctx))

		// A FETCH prepared before its cursor exists, run in one pipeline with the DECLARE
		// (pgx's TestPipelineQueryStatementCursorFetch, on a masked table): the proxy asks
		// the backend for the DECLARE's answer before it looks the cursor up.
		c3 := connect(t)
		sd, err := c3.Prepare(ctx, "ps_fetch", `fetch all in "pc"`, nil)
		require.NoError(t, err)
		pipelineRows := func(stmts ...func(p *pgconn.Pipeline)) (rows []string, errs int) {
			_, err := c3.Exec(ctx, "begin").ReadAll()
			require.NoError(t, err)
			p := c3.StartPipeline(ctx)
			for _, f := range stmts {
				f(p)
			}
			require.NoError(t, p.Sync())
			for {
				r, err := p.GetResults()
				if err != nil {
					errs++
					continue
				}
				if _, ok := r.(*pgconn.PipelineSync); ok {
					break
				}
				if rr, ok := r.(*pgconn.ResultReader); ok {
					res := rr.Read()
					if res.Err != nil {
						errs++
					}
					for _, row := range res.Rows {
						rows = append(rows, string(row[0]))
					}
				}
			}
			require.NoError(t, p.Close())
			_, err = c3.Exec(ctx, "rollback").ReadAll()
			require.NoError(t, err)
			return rows, errs
		}
		rows, errs := pipelineRows(
			func(p *pgconn.Pipeline) { p.SendQueryParams(`declare "pc" cursor for `+cardQuery, nil, nil, nil, nil) },
			func(p *pgconn.Pipeline) { p.SendQueryStatement(sd, nil, nil, nil) })
		require.Zero(t, errs)
		require.Equal(t, []string{"****"}, rows)
		// The same after an error earlier in the pipeline: the backend skips the DECLARE and
		// the FETCH, and the proxy does not wait for a DECLARE that will not run.
		rows, errs = pipelineRows(
			func(p *pgconn.Pipeline) { p.SendQueryParams(`select 1/0`, nil, nil, nil, nil) },
			func(p *pgconn.Pipeline) { p.SendQueryParams(`declare "pc" cursor for `+cardQuery, nil, nil, nil, nil) },
			func(p *pgconn.Pipeline) { p.SendQueryStatement(sd, nil, nil, nil) })
		require.NotZero(t, errs)
		require.Empty(t, rows)

		// The protocol's Execute of a portal never bound (a SQL cursor) is refused.
		c2 := connect(t)
		_, err = c2.Exec(ctx, "BEGIN; DECLARE cur3 CURSOR FOR "+cardQuery).ReadAll()
		require.NoError(t, err)
		hc, err := c2.Hijack()
		require.NoError(t, err)
		defer hc.Conn.Close()
		require.NoError(t, hc.Conn.SetDeadline(time.Now().Add(30*time.Second)))
		fe := hc.Frontend
		fe.Send(&pgproto3.Execute{Portal: "cur3"})
		fe.Send(&pgproto3.Sync{})
		require.NoError(t, fe.Flush())
		var codes []string
		for {
			m, err := fe.Receive()
			require.NoError(t, err)
			switch m := m.(type) {
			case *pgproto3.DataRow:
				t.Fatalf("rows of an unbound portal reached the client: %q", m.Values)
			case *pgproto3.ErrorResponse:
				codes = append(codes, m.Code)
			}
			if rfq, ok := m.(*pgproto3.ReadyForQuery); ok {
				require.Equal(t, byte('E'), rfq.TxStatus, "the transaction fails as PostgreSQL's would")
				break
			}
		}
		require.Equal(t, []string{"34000"}, codes)
	})
}

// TestSimpleQueryInFailedPipeline: after an error in the extended protocol the backend
// discards everything up to the Sync, a simple Query too. The proxy must pair the answers
// the same way, or every later result would be attributed (and masked) as the statement
// before it: a client could read a masked column in the clear.
func TestSimpleQueryInFailedPipeline(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, env.connTo("app-tables", ""))
	require.NoError(t, err)
	hc, err := c.Hijack()
	require.NoError(t, err)
	defer hc.Conn.Close()
	require.NoError(t, hc.Conn.SetDeadline(time.Now().Add(30*time.Second)))
	fe := hc.Frontend
	const cards = "select card_number from customers order by id"
	// One answer of the round: the rows (first column) and error codes up to the next
	// ReadyForQuery.
	round := func() (rows []string, codes []string) {
		for {
			m, err := fe.Receive()
			require.NoError(t, err)
			switch m := m.(type) {
			case *pgproto3.DataRow:
				rows = append(rows, string(m.Values[0]))
			case *pgproto3.ErrorResponse:
				codes = append(codes, m.Code)
			case *pgproto3.ReadyForQuery:
				return rows, codes
			}
		}
	}
	// A Parse that the backend refuses (the proxy lets it through: it parses), then a simple
	// Query before the Sync: PostgreSQL discards the Query.
	fe.Send(&pgproto3.Parse{Query: "select * from no_such_table"})
	fe.Send(&pgproto3.Query{String: cards})
	fe.Send(&pgproto3.Sync{})
	require.NoError(t, fe.Flush())
	rows, codes := round()
	require.Empty(t, rows)
	require.Equal(t, []string{"42P01"}, codes)
	// The next queries are answered, and masked, as themselves.
	for i := 0; i < 3; i++ {
		fe.Send(&pgproto3.Query{String: cards})
		require.NoError(t, fe.Flush())
		rows, codes = round()
		require.Empty(t, codes)
		require.Equal(t, []string{"****", "****", "****"}, rows)
	}
	fe.Send(&pgproto3.Query{String: "select 'plain'::text"})
	require.NoError(t, fe.Flush())
	rows, _ = round()
	require.Equal(t, []string{"plain"}, rows)
}

// TestExpressionsOverMaskedColumns: with a column rule and no detectors (app-tables), a
// result column computed from a masked column has no source column to match; it is
// masked whole when the statement refers to a masked column, and left alone otherwise.
func TestExpressionsOverMaskedColumns(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, env.connTo("app-tables", ""))
	require.NoError(t, err)
	defer c.Close(ctx)
	for _, tc := range []struct {
		sql  string
		want []any
	}{
		{"select id, card_number from customers where id = 1", []any{"1", "****"}},
		{"select max(card_number) from customers", []any{"****"}},
		{"select card_number || '' from customers where id = 1", []any{"****"}},
		{"with x as (select upper(card_number) as c from customers) select c from x limit 1", []any{"****"}},
		{"select (select card_number from customers where id = 2)::text as sub", []any{"****"}},
		{"select c from customers c where id = 1", []any{nil}}, // a whole row: masked whole (not text: NULL)
		// NULL or not, a value computed from a masked column looks the same: no oracle.
		{"select case when card_number like '4111%' then 'yes' end from customers where id = 1", []any{"****"}},
		{"select case when card_number like '4111%' then 'yes' end from customers where id = 2", []any{"****"}},
		{"select nullif(card_number, '4111111111111111') from customers where id = 1", []any{"****"}},
		{"select x::bytea from customers t(a, b, c, x) where a = 1", []any{nil}},
		// Statements that do not refer to a masked column are not touched.
		{"select count(*) from customers", []any{"3"}},
		{"select upper(name) from customers where id = 1", []any{"ADA"}},
	} {
		res, err := c.Exec(ctx, tc.sql).ReadAll()
		require.NoError(t, err, tc.sql)
		require.Equal(t, [][]any{tc.want}, rowsOf(res[0].Rows), tc.sql)
	}
	// A count filtered on a masked column answers questions about its values: refused.
	_, err = c.Exec(ctx, "select count(*) from customers where card_number like '4111%'").ReadAll()
	requireCode(t, err, "42501")
	require.ErrorContains(t, err, "public.customers.card_number is masked for this caller; a statement that uses it to filter rows")
}

// TestFunctionCallInFailedPipeline: a fast-path FunctionCall sent after an extended-protocol
// message that fails, before the Sync, is discarded by PostgreSQL. The proxy's own lookup
// of the function's name would be discarded with it: the proxy answers exactly as
// PostgreSQL does, at once, and the next call works.
func TestFunctionCallInFailedPipeline(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exchange := func(connString string) [][]string {
		c, err := pgconn.Connect(ctx, connString)
		require.NoError(t, err)
		var oid string
		res, err := c.Exec(ctx, "select 'pg_backend_pid'::regproc::oid").ReadAll()
		require.NoError(t, err)
		oid = string(res[0].Rows[0][0])
		fn, err := strconv.ParseUint(oid, 10, 32)
		require.NoError(t, err)
		hc, err := c.Hijack()
		require.NoError(t, err)
		defer hc.Conn.Close()
		// Far below the proxy's startup timeout (10 s here), which a lost lookup waited for.
		require.NoError(t, hc.Conn.SetDeadline(time.Now().Add(5*time.Second)))
		fe := hc.Frontend
		round := func() []string {
			var got []string
			for {
				m, err := fe.Receive()
				require.NoError(t, err, "after %v", got)
				switch m := m.(type) {
				case *pgproto3.ErrorResponse:
					got = append(got, "error "+m.Code)
				case *pgproto3.FunctionCallResponse:
					got = append(got, "function result")
				case *pgproto3.ReadyForQuery:
					return append(got, "ready "+string(m.TxStatus))
				default:
					got = append(got, fmt.Sprintf("%T", m))
				}
			}
		}
		var rounds [][]string
		call := &pgproto3.FunctionCall{Function: uint32(fn), ResultFormatCode: 0}
		fe.Send(&pgproto3.Parse{Query: "select * from no_such_table"})
		fe.Send(call)
		fe.Send(&pgproto3.Sync{})
		require.NoError(t, fe.Flush())
		rounds = append(rounds, round())
		// A pipeline that does not fail, then the call: it is answered, with a
		// ReadyForQuery of its own, and the Sync with another.
		fe.Send(&pgproto3.Parse{Query: "select 1"})
		fe.Send(call)
		fe.Send(&pgproto3.Sync{})
		require.NoError(t, fe.Flush())
		rounds = append(rounds, round(), round())
		fe.Send(call)
		require.NoError(t, fe.Flush())
		rounds = append(rounds, round())
		return rounds
	}
	direct := exchange(env.pg.ConnString("app", "app-secret", "app"))
	require.Equal(t, [][]string{
		{"error 42P01", "ready I"},
		{"*pgproto3.ParseComplete", "function result", "ready I"},
		{"ready I"},
		{"function result", "ready I"},
	}, direct)
	require.Equal(t, direct, exchange(env.connTo("app", "")))
}

// TestInternalErrorEndsOnlyItsSession: a panic in one session's handling (here forced by a
// test hook) ends that session with an error, and the gateway goes on serving the others
// and new ones.
func TestInternalErrorEndsOnlyItsSession(t *testing.T) {
	t.Cleanup(func() { postgres.SetTestHook(nil) }) // after the proxy has stopped
	postgres.SetTestHook(func(typ byte, body []byte) {
		if typ == 'Q' && strings.Contains(string(body), "boom") {
			panic("forced by the test")
		}
	})
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other, err := pgconn.Connect(ctx, env.connTo("app", ""))
	require.NoError(t, err)
	defer other.Close(ctx)
	victim, err := pgconn.Connect(ctx, env.connTo("app", ""))
	require.NoError(t, err)
	defer victim.Close(ctx)

	_, err = victim.Exec(ctx, "select 'boom'").ReadAll()
	requireCode(t, err, "XX000") // the session that hit the error ends, and says so
	require.True(t, victim.IsClosed())

	rs, err := other.Exec(ctx, "select 'still here'").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "still here", string(rs[0].Rows[0][0]))
	fresh, err := pgconn.Connect(ctx, env.connTo("app", ""))
	require.NoError(t, err)
	defer fresh.Close(ctx)
	rs, err = fresh.Exec(ctx, "select 'new session'").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "new session", string(rs[0].Rows[0][0]))
}

// A panic that leaves a lock of the session held can leave the session's other loop waiting
// on it for ever; the session is then ended without that loop after a bounded wait, so the
// trail still records its end (internal_error) and the server forgets it.
func TestSessionStuckAfterAnInternalErrorStillEnds(t *testing.T) {
	unlocked := make(chan func(), 1)
	t.Cleanup(func() {
		postgres.SetTestHookLocked(nil)
		postgres.SetStuckLoopWait(10 * time.Second)
	})
	postgres.SetStuckLoopWait(time.Second)
	postgres.SetTestHookLocked(func(typ byte, body []byte, unlock func()) {
		if typ == 'Q' && strings.Contains(string(body), "stuck") {
			unlocked <- unlock
			time.Sleep(500 * time.Millisecond) // the backend answers the statement before: its loop waits for the lock
			panic("forced by the test, with the queue lock held")
		}
	})
	env := startProxy(t, 1<<20)
	t.Cleanup(func() {
		// Let the stuck loop go before the proxy shuts down (it waits for every session).
		select {
		case unlock := <-unlocked:
			unlock()
		default:
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	victim, err := pgconn.Connect(ctx, env.connTo("app", "sslmode=disable"))
	require.NoError(t, err)
	defer victim.Close(ctx)
	// Two pipelined queries: the first is forwarded, the second panics in the client loop.
	var msgs []byte
	for _, q := range []string{"select pg_sleep(0.05)", "select 'stuck'"} {
		msgs, err = (&pgproto3.Query{String: q}).Encode(msgs)
		require.NoError(t, err)
	}
	_, err = victim.Conn().Write(msgs)
	require.NoError(t, err)

	var end []byte
	deadline := time.Now().Add(20 * time.Second)
	for end == nil && time.Now().Before(deadline) {
		for _, line := range bytes.Split(readAll(t, env.bus, "app"), []byte{'\n'}) {
			if bytes.Contains(line, []byte(`"type":"session.end"`)) {
				end = line
			}
		}
	}
	require.NotNil(t, end, "the stuck session's end is recorded")
	require.Contains(t, string(end), `"reason":"internal_error"`)
	require.Contains(t, string(end), "stayed blocked")

	// The others are served meanwhile.
	other, err := pgconn.Connect(ctx, env.connTo("app", "sslmode=disable"))
	require.NoError(t, err)
	defer other.Close(ctx)
	_, err = other.Exec(ctx, "select 1").ReadAll()
	require.NoError(t, err)
}
