package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
)

// The canary leak fuzzer: canary values are planted in the demo's masked columns
// (customers.card_number, customers.email), values no content detector recognises, so that
// only masking by lineage stands between them and the caller. Thousands of generated
// statements then run through the proxy as masked, read-only identities: sqlsmith's
// against the demo schema, and trickGen's (aliases, whole rows, casts, string and numeric
// functions, set operations, ordering, COPY, cursors, prepared statements), in text and
// binary formats, over the simple and the extended protocol, against two resources: the
// demo's policies, and a permissive one that lets its readers run any read-only
// statement on any relation (masks the same). No response and no audit event may hold a
// canary in any form a caller could decode, and the database must be as it was.
//
// `make test` runs it for a fixed seed and about a minute; `make fuzz-policy SEED=...
// DURATION=...` runs it longer and prints what it tried.

// canary is one planted value and the forms in which finding it is a leak.
type canary struct {
	value    string
	patterns []string // lower-cased forms searched in lower-cased output, 6 bytes or more
}

// newCanary derives the searchable forms of v: clear, reversed, hex, base64 at every
// alignment, every substring of 6 characters (10 digits for a number: shorter runs of
// digits turn up by chance), and the number's neighbours. Its digits with separators are
// found by searching output with the separators taken out (canaries.leak).
func newCanary(v string) canary {
	c := canary{value: v}
	add := func(s string) {
		if len(s) >= 6 {
			c.patterns = append(c.patterns, strings.ToLower(s))
		}
	}
	add(v)
	add(reverse(v))
	add(hex.EncodeToString([]byte(v)))
	for skip := 0; skip < 3; skip++ {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			b := strings.TrimRight(enc.EncodeToString([]byte(v[skip:])), "=")
			if len(b) > 4 {
				add(b[:len(b)-2]) // the last characters depend on what follows
			}
		}
	}
	window := 6
	if n, ok := new(big.Int).SetString(v, 10); ok {
		window = 10
		for d := int64(-3); d <= 3; d++ {
			add(new(big.Int).Add(n, big.NewInt(d)).String())
		}
	}
	for i := 0; i+window <= len(v); i++ {
		add(v[i : i+window])
		add(reverse(v[i : i+window]))
	}
	return c
}

// canaries finds any form of any canary in a text, in one pass: every pattern is indexed
// by its first 6 bytes.
type canaries struct {
	byPrefix map[string][]leakForm
}

type leakForm struct {
	pattern, canary string
}

func indexCanaries(cs []canary) *canaries {
	ix := &canaries{byPrefix: map[string][]leakForm{}}
	for _, c := range cs {
		for _, p := range c.patterns {
			ix.byPrefix[p[:6]] = append(ix.byPrefix[p[:6]], leakForm{p, c.value})
		}
	}
	return ix
}

// separators are what may stand between the digits of a number written for people.
var separators = strings.NewReplacer(" ", "", "-", "", ".", "", "_", "", ",", "", "/", "", "\t", "", ":", "")

// leak returns the canary a text holds, and in what form, if any.
func (ix *canaries) leak(text []byte) (string, bool) {
	low := strings.ToLower(string(text))
	for _, t := range []string{low, separators.Replace(low)} {
		for i := 0; i+6 <= len(t); i++ {
			for _, f := range ix.byPrefix[t[i:i+6]] {
				if strings.HasPrefix(t[i:], f.pattern) {
					return f.canary + " as " + f.pattern, true
				}
			}
		}
	}
	return "", false
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// plantCanaries adds customers whose card numbers and emails are canaries: 16 random
// digits that fail the Luhn check (no card detector sees them) and random letters (no
// email detector sees them).
func plantCanaries(t *testing.T, pg *localdb.Postgres, r *rand.Rand) []canary {
	var out []canary
	var rows []string
	for i := 0; i < 4; i++ {
		var card string
		for {
			var b strings.Builder
			b.WriteByte(byte('1' + r.IntN(9)))
			for b.Len() < 16 {
				b.WriteByte(byte('0' + r.IntN(10)))
			}
			if !luhn(b.String()) {
				card = b.String()
				break
			}
		}
		var mail strings.Builder
		for mail.Len() < 14 {
			mail.WriteByte(byte('a' + r.IntN(26)))
		}
		out = append(out, newCanary(card), newCanary(mail.String()))
		rows = append(rows, fmt.Sprintf("('canary %d', '%s', '%s')", i, mail.String(), card))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, pg.Exec(ctx, "demo", "INSERT INTO customers (name, email, card_number) VALUES "+strings.Join(rows, ", ")))
	return out
}

func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// checksum is what the demo database holds: every row, every relation and sequence.
func checksum(t *testing.T, pg *localdb.Postgres) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, pg.SuperuserConnString("demo"))
	require.NoError(t, err)
	defer c.Close(ctx)
	res, err := c.Exec(ctx, `SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
		SELECT c::text x FROM customers c UNION ALL SELECT o::text FROM orders o
		UNION ALL SELECT relkind::text || ':' || relname FROM pg_class WHERE relnamespace = 'public'::regnamespace
		UNION ALL SELECT 's:' || last_value FROM customers_id_seq UNION ALL SELECT 's:' || last_value FROM orders_id_seq
		UNION ALL SELECT 'f:' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace) s`).ReadAll()
	require.NoError(t, err)
	return string(res[0].Rows[0][0])
}

// sqlsmithQueries generates n statements with sqlsmith against the demo schema.
func sqlsmithQueries(t *testing.T, pg *localdb.Postgres, seed uint64, n int, catalog bool) []string {
	args := []string{"--target=" + pg.SuperuserConnString("demo"), fmt.Sprintf("--seed=%d", seed), fmt.Sprintf("--max-queries=%d", n), "--dry-run"}
	if !catalog {
		args = append(args, "--exclude-catalog")
	}
	out, err := exec.Command("sqlsmith", args...).Output()
	require.NoError(t, err, "sqlsmith (deploy/install-deps.sh installs it)")
	var qs []string
	for _, q := range strings.Split(string(out), ";\n") {
		if q = strings.TrimSpace(q); q != "" {
			qs = append(qs, q)
		}
	}
	require.NotEmpty(t, qs)
	return qs
}

type fuzzStats struct {
	tried, refused, failed, passed, rows int
	bySource, passedBy                   map[string]int
	leaks                                []string
	mismatches                           []string // the MCP query tool and the proxy decided differently
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestCanaryLeakFuzzer(t *testing.T) {
	seed, err := strconv.ParseUint(envOr("GATEHOUSE_FUZZ_SEED", "1"), 10, 64)
	require.NoError(t, err)
	duration, err := time.ParseDuration(envOr("GATEHOUSE_FUZZ_DURATION", "60s"))
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	pg, pwFile := demoPostgres(t)
	planted := plantCanaries(t, pg, r)
	canaries := indexCanaries(planted)
	before := checksum(t, pg)
	smith := sqlsmithQueries(t, pg, seed, 3000, false)
	smithCatalog := sqlsmithQueries(t, pg, seed+1, 500, true)

	// The demo's config, plus a resource whose readers may run any read-only statement,
	// with the same masks.
	natsURL := bustest.StartServer(t)
	dataDir := t.TempDir()
	t.Setenv("GATEHOUSE_DATA_DIR", dataDir)
	t.Setenv("GATEHOUSE_HTTP_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_PG_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_SSH_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_HTTP_PROXY_LISTEN", "127.0.0.1:0")
	t.Setenv("GATEHOUSE_NATS_URL", natsURL)
	t.Setenv("GATEHOUSE_CLICKHOUSE_ADDR", "127.0.0.1:1")
	t.Setenv("GATEHOUSE_DEMO_PG_ADDR", pg.Addr())
	t.Setenv("GATEHOUSE_DEMO_PG_PASSWORD_FILE", pwFile)
	cfg, err := config.Load("../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	cfg.Log.Level = "warn"
	open := cfg.Resources[0]
	open.Name = "demo-open"
	cfg.Resources = append(cfg.Resources, open)
	cfg.Policies = append(cfg.Policies, config.Policy{Name: "open", Resources: []string{"demo-open"}, Rules: []config.Rule{
		{Name: "read-anything", Effect: "allow", When: `"open-readers" in identity.groups && request.sql.statements > 0 && request.sql.read_only`},
		{Name: "cards", Effect: "mask", When: `"open-readers" in identity.groups`, Mask: &config.Mask{Columns: []string{"customers.card_number"}, Detectors: []string{"card"}, Method: "partial"}},
		{Name: "emails", Effect: "mask", When: `"open-readers" in identity.groups`, Mask: &config.Mask{Columns: []string{"customers.email"}, Detectors: []string{"email"}, Method: "hmac"}},
	}})
	cfg.Audit.SigningKeyFile = ""
	// The MCP server's query tool is driven too; its limits are not under test here.
	cfg.MCP.CallsPerMinute, cfg.MCP.RowsPerHour = 100000, 100000000
	require.NoError(t, cfg.Validate())
	a := app.New(cfg, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, []string{"dev-issuer", "policy", "proxy-postgres", "mcp"}) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})
	require.Eventually(t, a.Ready, time.Minute, 50*time.Millisecond)
	host, port, err := net.SplitHostPort(a.ListenAddr("postgres"))
	require.NoError(t, err)
	g := &gateway{issuer: "http://" + a.HTTPAddr()}
	tokens := map[string]string{"demo": g.token(t, "svc-orders", "orders-readers"), "demo-open": g.token(t, "svc-open", "open-readers")}

	connect := func(res string) *pgconn.PgConn {
		c, err := pgconn.Connect(context.Background(), fmt.Sprintf("host=%s port=%s dbname=%s user=svc password=%s sslmode=disable", host, port, res, tokens[res]))
		require.NoError(t, err)
		return c
	}
	conns := map[string]*pgconn.PgConn{"demo": connect("demo"), "demo-open": connect("demo-open")}
	endpoint := "http://" + a.HTTPAddr() + cfg.MCP.Path
	agents := map[string]*mcp.ClientSession{"demo": connectMCPAt(t, endpoint, tokens["demo"]), "demo-open": connectMCPAt(t, endpoint, tokens["demo-open"])}

	st := fuzzStats{bySource: map[string]int{}, passedBy: map[string]int{}}
	gen := &trickGen{r: r}
	deadline := time.Now().Add(duration)
	for i := 0; time.Now().Before(deadline); i++ {
		var sql, source string
		switch k := r.IntN(10); {
		case k < 5:
			sql, source = gen.next(), "tricks"
		case k < 9:
			sql, source = smith[r.IntN(len(smith))], "sqlsmith"
		default:
			sql, source = smithCatalog[r.IntN(len(smithCatalog))], "sqlsmith+catalog"
		}
		res := "demo-open"
		if r.IntN(3) == 0 {
			res = "demo"
		}
		c := conns[res]
		if c.IsClosed() {
			c = connect(res)
			conns[res] = c
		}
		st.tried++
		st.bySource[source]++
		if r.IntN(4) == 0 {
			// Through the MCP server's query tool.
			out, outcome := runMCPQuery(agents[res], res, sql)
			st.bySource["mcp"]++
			switch outcome {
			case "passed":
				st.passed++
				st.passedBy["mcp"]++
				st.passedBy[source]++ // the masking was tried all the same
			case "refused", "bounded":
				st.refused++
			default:
				st.failed++
			}
			if what, ok := canaries.leak(out); ok {
				st.leaks = append(st.leaks, fmt.Sprintf("%s (%s, %s, through the MCP query tool): %s\n  in: %.300q", what, res, source, sql, out))
			}
			// The same path: the statement sent directly is refused by the gateway exactly
			// when the tool refused it.
			var derr error
			if outcome != "bounded" {
				_, derr = runFuzz(c, sql, 0)
			}
			var pe *pgconn.PgError
			if direct := asPgError(derr, &pe) && pe.Code == "42501" && strings.HasPrefix(pe.Message, "Gatehouse"); outcome != "bounded" && direct != (outcome == "refused") {
				st.mismatches = append(st.mismatches, fmt.Sprintf("%s (%s): through MCP %s, directly %v\n  MCP said: %.300s", sql, res, outcome, derr, out))
			}
			continue
		}
		out, err := runFuzz(c, sql, r.IntN(3))
		if err != nil {
			var pe *pgconn.PgError
			if asPgError(err, &pe) && pe.Code == "42501" {
				st.refused++
				if os.Getenv("GATEHOUSE_FUZZ_REASONS") != "" {
					t.Logf("REFUSED %s %s: %s", res, source, pe.Message)
				}
			} else {
				st.failed++
			}
			out = append(out, []byte(err.Error())...)
		} else {
			st.passed++
			st.passedBy[source]++
			st.rows += bytes.Count(out, []byte{'\n'})
		}
		if what, ok := canaries.leak(out); ok {
			st.leaks = append(st.leaks, fmt.Sprintf("%s (%s, %s): %s\n  in: %.300q", what, res, source, sql, out))
		}
	}

	// Every event of both resources, as stored in JetStream once the gateway has stopped
	// (its publisher drains what it holds before it ends).
	for _, c := range conns {
		c.Close(context.Background())
	}
	for _, cs := range agents {
		_ = cs.Close()
	}
	cancel()
	stopped = true
	require.NoError(t, <-done)
	b := bustest.ConnectURL(t, natsURL)
	events := 0
	for _, res := range []string{"demo", "demo-open", "_mcp"} {
		events += eachEvent(t, b, res, func(data []byte) {
			if what, ok := canaries.leak(data); ok {
				st.leaks = append(st.leaks, fmt.Sprintf("in the audit trail of %s: %s: %.300q", res, what, data))
			}
		})
	}
	require.Positive(t, events)
	after := checksum(t, pg)

	t.Logf("canary fuzzer, seed %d, %s: %d statements tried (%v), %d refused by policy, %d failed in PostgreSQL, %d answered (%v; %d rows), %d leaks",
		seed, duration, st.tried, st.bySource, st.refused, st.failed, st.passed, st.passedBy, st.rows, len(st.leaks))
	for _, l := range st.leaks {
		t.Errorf("LEAK: %s", l)
	}
	for i, m := range st.mismatches {
		if i < 20 {
			t.Errorf("MCP and the proxy disagree: %s", m)
		}
	}
	require.Equal(t, before, after, "a read-only identity changed the database")
	// Most generated statements probe (refused by design) or fail in PostgreSQL (a cast that
	// does not fit): enough must still come back for the masking to have been tried.
	require.Greater(t, st.passedBy["tricks"], 200, "almost every generated statement refused: the fuzzer tested little")
	require.Positive(t, st.passedBy["mcp"], "no statement through the MCP query tool came back")
}

// runFuzz runs sql on c: the simple protocol (text), or the extended protocol in text or
// binary (a single statement; COPY goes by COPY). It returns everything the client got.
func runFuzz(c *pgconn.PgConn, sql string, mode int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	if strings.HasPrefix(sql, "copy ") {
		_, err := c.CopyTo(ctx, &out, sql)
		return out.Bytes(), err
	}
	write := func(rows [][][]byte) {
		for _, row := range rows {
			for _, v := range row {
				out.Write(v)
				out.WriteByte('\t')
			}
			out.WriteByte('\n')
		}
	}
	if mode == 0 || strings.Contains(strings.TrimRight(sql, "; \n"), ";") {
		results, err := c.Exec(ctx, sql).ReadAll()
		for _, r := range results {
			write(r.Rows)
		}
		return out.Bytes(), err
	}
	formats := []int16{0}
	if mode == 2 {
		formats = []int16{1}
	}
	r := c.ExecParams(ctx, sql, nil, nil, nil, formats).Read()
	write(r.Rows)
	return out.Bytes(), r.Err
}

func asPgError(err error, pe **pgconn.PgError) bool {
	p, ok := err.(*pgconn.PgError)
	if ok {
		*pe = p
	}
	return ok
}

// eachEvent calls fn with every message of a resource's sessions in the stream (one or
// more events, newline-separated), once the publisher has flushed, and returns how many.
func eachEvent(t *testing.T, b *bus.Bus, resource string, fn func([]byte)) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := b.JS.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(bus.SubjectAudit+"."+resource+".>"))
	require.NoError(t, err)
	total := 0
	for _, n := range info.State.Subjects {
		total += int(n)
	}
	c, err := b.JS.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectAudit + "." + resource + ".>"}})
	require.NoError(t, err)
	n := 0
	for n < total {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		got := 0
		for m := range batch.Messages() {
			data, err := bus.AuditData(m.Headers(), m.Data())
			require.NoError(t, err)
			fn(data)
			got++
		}
		require.NoError(t, batch.Error())
		require.Positive(t, got, "read %d of %d messages", n, total)
		n += got
	}
	return n
}
