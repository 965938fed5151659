package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/schemas"
)

// attacks are statements whose bytes an encoding with ASCII second bytes (SJIS, BIG5, GBK,
// GB18030, UHC, JOHAB) reads as more statements than UTF-8 does: lead byte b makes the
// backslash or quote after it part of a character, so the string literal goes on past
// what the gateway sees as its end.
func attacks(lead byte) []string {
	l := string([]byte{lead})
	return []string{
		"select E'" + l + "\\' ; select 2 ; -- '",
		"select '" + l + "'' ; select 2 ; -- '",
		"select E'" + l + "\\'' ; select 2 ; -- '",
	}
}

// statementsRun counts the statements the backend ran for sql: its results.
func statementsRun(ctx context.Context, c *pgconn.PgConn, sql string) (int, error) {
	res, err := c.Exec(ctx, sql).ReadAll()
	return len(res), err
}

// TestEveryClientEncodingIsSplitAsTheGatewaySplitsIt is the parser differential: for every
// client encoding PostgreSQL accepts, statements whose multibyte characters hold the bytes
// of a backslash or a quote are split by the backend as the gateway splits them, or
// refused. Directly, the backend splits some of them into several statements (the attack
// is real); through the gateway a client asking for such an encoding is refused at
// startup, however it asks, and under the pinned UTF8 the same bytes are refused or run
// as the one statement the policy saw.
func TestEveryClientEncodingIsSplitAsTheGatewaySplitsIt(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	su, err := pgconn.Connect(ctx, env.pg.SuperuserConnString("app"))
	require.NoError(t, err)
	defer su.Close(ctx)
	res, err := su.Exec(ctx, `select pg_encoding_to_char(i) from generate_series(0, 63) i where pg_encoding_to_char(i) <> '' order by i`).ReadAll()
	require.NoError(t, err)
	var encodings []string
	for _, r := range res[0].Rows {
		encodings = append(encodings, string(r[0]))
	}
	require.Contains(t, encodings, "SJIS")
	require.Greater(t, len(encodings), 35)

	splitsDirectly := 0
	for _, enc := range encodings {
		t.Run(enc, func(t *testing.T) {
			direct, err := pgconn.Connect(ctx, env.pg.ConnString("app", "app-secret", "app")+" client_encoding="+enc)
			if err != nil {
				t.Skipf("PostgreSQL does not take %s as a client encoding: %v", enc, err)
			}
			defer direct.Close(ctx)
			accepted := enc == "UTF8" || enc == "SQL_ASCII"
			for _, how := range []string{"client_encoding=" + enc, "options='-c client_encoding=" + enc + "'", "options='--client-encoding=" + enc + "'"} {
				c, err := pgconn.Connect(ctx, env.connTo("app", how))
				if !accepted {
					requireCode(t, err, "22023")
					require.ErrorContains(t, err, `client_encoding "`+enc+`"`)
					continue
				}
				require.NoError(t, err, how)
				require.Equal(t, "UTF8", c.ParameterStatus("client_encoding"))
				c.Close(ctx)
			}
			gw, err := pgconn.Connect(ctx, env.connTo("app", ""))
			require.NoError(t, err)
			defer gw.Close(ctx)
			for lead := 0x80; lead <= 0xFF; lead++ {
				for _, sql := range attacks(byte(lead)) {
					if n, err := statementsRun(ctx, direct, sql); err == nil && n > 1 {
						splitsDirectly++
					}
					// Through the gateway (UTF8 pinned): refused as not UTF-8, or run as the
					// one statement the policy analysed.
					n, err := statementsRun(ctx, gw, sql)
					if err != nil {
						requireCode(t, err, "22021")
						continue
					}
					require.Equal(t, policy.AnalyzeSQL(sql).Statements, n, "%s: %q", enc, sql)
				}
			}
		})
	}
	require.Greater(t, splitsDirectly, 100, "directly, the multibyte encodings split the attacks into several statements")
}

// TestLexingSettingsStayPinned: a session cannot change client_encoding or
// standard_conforming_strings by SET, set_config, RESET to a role's default, or code the
// policy cannot see into; when the backend reports a change the session ends before
// another statement is read.
func TestLexingSettingsStayPinned(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	su, err := pgconn.Connect(ctx, env.pg.SuperuserConnString("app"))
	require.NoError(t, err)
	defer su.Close(ctx)
	// A role default that would change both for every new session.
	_, err = su.Exec(ctx, `ALTER ROLE app SET client_encoding = 'SJIS'; ALTER ROLE app SET standard_conforming_strings = off;
		CREATE FUNCTION to_sjis() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('client_encoding', 'SJIS', false); RETURN 1; END $$;
		ALTER FUNCTION to_sjis() OWNER TO app`).ReadAll()
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgconn.Connect(context.Background(), env.pg.SuperuserConnString("app"))
		if err == nil {
			_, _ = c.Exec(context.Background(), "ALTER ROLE app RESET ALL").ReadAll()
			c.Close(context.Background())
		}
	})

	c, err := pgconn.Connect(ctx, env.connTo("app", ""))
	require.NoError(t, err)
	defer c.Close(ctx)
	require.Equal(t, "UTF8", c.ParameterStatus("client_encoding"), "the startup parameter outranks ALTER ROLE ... SET")
	require.Equal(t, "on", c.ParameterStatus("standard_conforming_strings"))
	for _, sql := range []string{
		"set client_encoding = 'SJIS'", "set names 'BIG5'", "set standard_conforming_strings = off",
		"select set_config('client_encoding', 'GBK', false)", "select set_config('standard_conforming_strings', 'off', true)",
	} {
		_, err := c.Exec(ctx, sql).ReadAll()
		requireCode(t, err, "42501")
		require.ErrorContains(t, err, "Gatehouse pins", sql)
	}
	for _, sql := range []string{"reset client_encoding", "reset all", "set client_encoding = 'UTF8'", "discard all"} {
		_, err := c.Exec(ctx, sql).ReadAll()
		require.NoError(t, err, sql)
		res, err := c.Exec(ctx, "show client_encoding").ReadAll()
		require.NoError(t, err)
		require.Equal(t, "UTF8", string(res[0].Rows[0][0]), "after %s", sql)
	}

	// Code the policy cannot see into changes the encoding: the session ends at once, and a
	// statement pipelined behind it never reaches the backend.
	hc, err := pgconn.Connect(ctx, env.connTo("app", ""))
	require.NoError(t, err)
	h, err := hc.Hijack()
	require.NoError(t, err)
	defer h.Conn.Close()
	require.NoError(t, h.Conn.SetDeadline(time.Now().Add(30*time.Second)))
	fe := h.Frontend
	fe.Send(&pgproto3.Query{String: "select to_sjis()"})
	fe.Send(&pgproto3.Query{String: "select E'\x95\\' ; create table smuggled (x int) ; -- '"})
	require.NoError(t, fe.Flush())
	var got []string
	for {
		m, err := fe.Receive()
		if err != nil {
			break
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			got = append(got, m.Severity+" "+m.Code+" "+m.Message)
		case *pgproto3.ParameterStatus:
			got = append(got, "status "+m.Name+"="+m.Value)
		case *pgproto3.CommandComplete:
			got = append(got, "complete "+string(m.CommandTag))
		}
	}
	require.Len(t, got, 2, "%v", got)
	require.Equal(t, "complete SELECT 1", got[0])
	require.Contains(t, got[1], "FATAL 57P01 terminating connection: the backend reported client_encoding \"SJIS\"")
	res, err := su.Exec(ctx, "select count(*) from pg_class where relname = 'smuggled'").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "0", string(res[0].Rows[0][0]), "the pipelined statement never ran")

	// The extended protocol: nothing is parsed after such a statement before its Sync.
	ec, err := pgconn.Connect(ctx, env.connTo("app", ""))
	require.NoError(t, err)
	defer ec.Close(ctx)
	batch := &pgconn.Batch{}
	batch.ExecParams("select to_sjis() where false", nil, nil, nil, nil)
	batch.ExecParams("select 2", nil, nil, nil, nil)
	_, err = ec.ExecBatch(ctx, batch).ReadAll()
	requireCode(t, err, "0A000")
	require.ErrorContains(t, err, "send a Sync before the next statement")
	res, err = ec.Exec(ctx, "select 3").ReadAll()
	require.NoError(t, err, "the session goes on")
	require.Equal(t, "3", string(res[0].Rows[0][0]))

	// The audit trail says why the session ended.
	data := readAll(t, env.bus, "app")
	require.Contains(t, string(data), `"cause":"settings_changed"`)
	var ended bool
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"type":"session.terminated"`) && strings.Contains(line, "client_encoding") {
			var e schemas.Event
			require.NoError(t, json.Unmarshal([]byte(line), &e))
			require.Equal(t, schemas.TypeSessionTerminated, e.Type)
			ended = true
		}
	}
	require.True(t, ended, "session.terminated names the setting")
}
