package postgres_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/config"
)

const testMaskKey = "0123456789abcdef0123456789abcdef-test-key"

const maskFixture = `
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text, card_int bigint, note text);
ALTER TABLE customers OWNER TO app;
INSERT INTO customers VALUES
 (1, 'Ada', 'ada@example.com', '4111111111111111', 4111111111111111, 'paid with 4111 1111 1111 1111, ref ORD-123456'),
 (2, 'Alan', 'alan@example.com', '5500005555555559', 5500005555555559, 'mail alan@example.com'),
 (3, 'Ada', 'ada@example.com', '4012888888881881', 42, 'no secrets; order 12345');
CREATE TABLE contacts (id int PRIMARY KEY, note text);
ALTER TABLE contacts OWNER TO app;
INSERT INTO contacts VALUES (100, 'contact bob@example.com');
`

// maskRules apply to resource app-masked: card numbers partially (by column and by
// content), emails as HMAC tokens, order references redacted.
var maskRules = []config.Rule{
	{Name: "cards", Effect: "mask", When: "true", Mask: &config.Mask{Columns: []string{"customers.card_number"}, Detectors: []string{"card"}, Method: "partial"}},
	{Name: "emails", Effect: "mask", When: "true", Mask: &config.Mask{Detectors: []string{"email"}, Method: "hmac"}},
	{Name: "refs", Effect: "mask", When: "true", Mask: &config.Mask{Regex: []string{`ORD-[0-9]{6}`}}},
	{Name: "approve-deletes", Effect: "require_approval", When: `"delete" in request.sql.kinds`, Reason: "deletes need a second pair of eyes"},
}

// secrets are the clear values that must never reach a client of app-masked or an event.
var secrets = []string{"4111111111111111", "4111 1111 1111 1111", "5500005555555559", "4012888888881881", "ada@example.com", "alan@example.com", "ORD-123456", "bob@example.com"}

// token is the expected HMAC token, computed independently of the proxy.
func token(v string) string {
	m := hmac.New(sha256.New, []byte(testMaskKey))
	m.Write([]byte(v))
	return "tok_" + hex.EncodeToString(m.Sum(nil)[:10])
}

const maskQuery = "select id, card_number as x, email, card_number || '' as y, card_int, note from customers order by id"

func TestMasking(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// card_number || '' is computed from the masked column: masked whole, not partially.
	wantText := [][]any{
		{"1", "************1111", token("ada@example.com"), "****", nil, "paid with **** **** **** 1111, ref ****"},
		{"2", "************5559", token("alan@example.com"), "****", nil, "mail " + token("alan@example.com")},
		{"3", "************1881", token("ada@example.com"), "****", "42", "no secrets; order 12345"},
	}

	t.Run("text format, simple protocol (aliases and expressions too)", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.connTo("app-masked", ""))
		require.NoError(t, err)
		defer c.Close(ctx)
		res, err := c.Exec(ctx, maskQuery).ReadAll()
		require.NoError(t, err)
		require.Equal(t, wantText, rowsOf(res[0].Rows))
	})
	t.Run("binary format, extended protocol", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.connTo("app-masked", ""))
		require.NoError(t, err)
		defer c.Close(ctx)
		res := c.ExecParams(ctx, maskQuery, nil, nil, nil, []int16{1}).Read()
		require.NoError(t, res.Err)
		require.Len(t, res.Rows, 3)
		// Text-like columns are masked in binary as in text; a bigint is left to column rules
		// (binary numbers are not scanned by detectors).
		for i, row := range res.Rows {
			require.Equal(t, wantText[i][1], string(row[1]))
			require.Equal(t, wantText[i][2], string(row[2]))
			require.Equal(t, wantText[i][3], string(row[3]))
			require.Equal(t, wantText[i][5], string(row[5]))
		}
	})
	t.Run("pgx prepared statement, executed again without a Describe", func(t *testing.T) {
		c, err := pgx.Connect(ctx, env.connTo("app-masked", ""))
		require.NoError(t, err)
		defer c.Close(ctx)
		for range 3 {
			rows, err := c.Query(ctx, "select card_number, email from customers where id = $1", 1)
			require.NoError(t, err)
			var card, email string
			require.True(t, rows.Next())
			require.NoError(t, rows.Scan(&card, &email))
			rows.Close()
			require.NoError(t, rows.Err())
			require.Equal(t, "************1111", card)
			require.Equal(t, token("ada@example.com"), email)
		}
		// Deterministic tokens: group-bys still group.
		rows, err := c.Query(ctx, "select email, count(*) from customers group by email order by 2 desc")
		require.NoError(t, err)
		got := map[string]int64{}
		for rows.Next() {
			var e string
			var n int64
			require.NoError(t, rows.Scan(&e, &n))
			got[e] = n
		}
		require.NoError(t, rows.Err())
		require.Equal(t, map[string]int64{token("ada@example.com"): 2, token("alan@example.com"): 1}, got)
	})
	t.Run("psql, and COPY TO STDOUT", func(t *testing.T) {
		out := psqlMasked(t, env, "select card_number, email from customers where id = 2")
		require.Equal(t, "************5559|"+token("alan@example.com"), out)
		// A table with masked columns: every field of its COPY is masked.
		out = psqlMasked(t, env, `\copy customers (id, card_number) to stdout`)
		require.NotContains(t, out, "5500005555555559")
		require.Contains(t, out, "************5559")
		// A table without: detectors still apply.
		out = psqlMasked(t, env, `\copy contacts to stdout`)
		require.Equal(t, "100\tcontact "+token("bob@example.com"), out)
	})
	t.Run("require_approval refuses with approval required, nothing reaches the backend", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.connTo("app-masked", ""))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "delete from customers where id = 3").ReadAll()
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		require.Equal(t, "42501", pgErr.Code)
		require.Contains(t, pgErr.Message, "approval required (policy masking, rule approve-deletes): deletes need a second pair of eyes")
		require.Contains(t, pgErr.Hint, "only when approvals are configured", "the hint says why it is not held (this proxy has no approvals)")
		res, err := c.Exec(ctx, "select count(*) from customers").ReadAll()
		require.NoError(t, err)
		require.Equal(t, "3", string(res[0].Rows[0][0]))
	})
	t.Run("a comment ended by a carriage return: the statement is what PostgreSQL reads", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.connTo("app-masked", ""))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "select --\r'\n', id from customers --'\n").ReadAll()
		require.NoError(t, err) // decided, and cached under its key
		res, err := c.Exec(ctx, "select --\r'\n', $$.$$ || card_number from customers --'\n").ReadAll()
		require.NoError(t, err)
		require.Len(t, res[0].Rows, 3)
		for _, row := range res[0].Rows {
			require.Equal(t, "****", string(row[1]), "PostgreSQL ends a -- comment at \\r: the card number is a result column, masked")
		}
	})
	t.Run("errors and notices do not carry masked values", func(t *testing.T) {
		cfg, err := pgconn.ParseConfig(env.connTo("app-masked", ""))
		require.NoError(t, err)
		var notices []string
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
		c, err := pgconn.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		defer c.Close(ctx)
		withheld := func(code string) string {
			return "Gatehouse: PostgreSQL's message is withheld: this statement computes on masked columns, and the message could quote their values (SQLSTATE " + code + ")"
		}
		for _, tc := range []struct{ sql, code, msg string }{
			// PostgreSQL quotes the value it could not take: of a statement that computes
			// on a masked column, the whole message is withheld, whatever its class.
			{"select card_number::int from customers where id = 1", "22003", withheld("22003")},
			{"select card_number::regclass from customers where id = 1", "42P01", withheld("42P01")},
			{"select current_setting(card_number) from customers where id = 1", "42704", withheld("42704")},
			// Of other statements, quoted values of data exceptions are redacted.
			{"select email::int from customers where id = 1", "22P02", `invalid input syntax for type integer: "****"`},
			{"select note::date from customers where id = 2", "22007", `invalid input syntax for type date: "****"`},
		} {
			_, err = c.Exec(ctx, tc.sql).ReadAll()
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr, tc.sql)
			require.Equal(t, tc.code, pgErr.Code, tc.sql)
			require.Equal(t, tc.msg, pgErr.Message, tc.sql)
		}
		// Code the gateway cannot see into could read the masked columns: refused.
		_, err = c.Exec(ctx, `DO $$ BEGIN RAISE NOTICE 'card %', (select card_number from customers where id = 1); END $$`).ReadAll()
		requireCode(t, err, "42501")
		require.ErrorContains(t, err, "runs code the gateway cannot see into (DO block)")
		// What the backend says of other values gets the content detectors.
		_, err = c.Exec(ctx, `select note::int from customers where id = 1`).ReadAll()
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		require.Equal(t, `invalid input syntax for type integer: "****"`, pgErr.Message)
		_, err = c.Exec(ctx, `select 1/0 from contacts`).ReadAll()
		require.ErrorAs(t, err, &pgErr)
		require.Equal(t, "22012", pgErr.Code)
		for _, s := range secrets {
			require.NotContains(t, fmt.Sprint(err, notices), s)
		}
	})
	t.Run("the clear values are in no event; chunk events count what was masked", func(t *testing.T) {
		data := readAll(t, env.bus, "app-masked")
		for _, s := range secrets {
			require.NotContains(t, string(data), s)
		}
		var byColumn bool
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var e schemas.Event
			require.NoError(t, json.Unmarshal(line, &e))
			if e.Type != schemas.TypeDbResultChunk {
				continue
			}
			var c schemas.DbResultChunk
			require.NoError(t, e.Decode(&c))
			for _, m := range c.Masked {
				if m.By == "public.customers.card_number" && m.Method == "partial" && m.Count == 3 && m.Name == "x" {
					byColumn = true
				}
			}
		}
		require.True(t, byColumn, "a chunk event counts the 3 card numbers masked in column x")
	})
}

func rowsOf(rows [][][]byte) [][]any {
	var out [][]any
	for _, r := range rows {
		var row []any
		for _, v := range r {
			if v == nil {
				row = append(row, nil)
			} else {
				row = append(row, string(v))
			}
		}
		out = append(out, row)
	}
	return out
}

func psqlMasked(t *testing.T, env *proxyEnv, cmdText string) string {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-At", env.connTo("app-masked", "sslmode=disable"), "-c", cmdText)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+env.token)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.TrimSpace(string(out))
}

// readAll returns every event of a resource's sessions so far, one per line, after the
// lingering batches have gone out.
func readAll(t *testing.T, b *bus.Bus, resource string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	time.Sleep(200 * time.Millisecond)
	c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + "." + resource + ".>"}})
	require.NoError(t, err)
	var out [][]byte
	for {
		m, err := c.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		data, err := bus.AuditData(m.Headers(), m.Data())
		require.NoError(t, err)
		out = append(out, data)
	}
	require.NotEmpty(t, out)
	return bytes.Join(out, []byte{'\n'})
}

// TestMaskingFollowsRenames: a masked column keeps its mask when it, its table or its
// schema is renamed (by object ID: the policy still names it as it was).
func TestMaskingFollowsRenames(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, env.connTo("app-masked", ""))
	require.NoError(t, err)
	defer c.Close(ctx)
	read := func(sql string) string {
		res, err := c.Exec(ctx, sql).ReadAll()
		require.NoError(t, err, sql)
		return string(res[0].Rows[0][0])
	}
	require.Equal(t, "************1111", read("select card_number from customers where id = 1"))
	for _, step := range []struct{ ddl, sql string }{
		{"alter table customers rename column card_number to cn", "select cn from customers where id = 1"},
		{"alter table customers rename to clients", "select cn from clients where id = 1"},
		{"create schema app2; alter table clients set schema app2", "select cn from app2.clients where id = 1"},
		{"alter schema app2 rename to app3", "select cn from app3.clients where id = 1"},
	} {
		_, err := c.Exec(ctx, step.ddl).ReadAll()
		require.NoError(t, err, step.ddl)
		require.Equal(t, "************1111", read(step.sql), "after %s", step.ddl)
	}
}
