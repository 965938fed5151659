package postgres_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy/postgres"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/dev/localdb/pgtest"
	"github.com/gatehouse/gatehouse/services/identity"
)

// engineDecider decides with a policy engine in-process (the NATS hop is tested
// elsewhere), with the catalogs the proxy published.
type engineDecider struct {
	e    *policy.Engine
	cats *policy.Catalogs
}

func (d engineDecider) Decide(_ context.Context, r *schemas.DecisionRequest) schemas.DecisionReply {
	in := &policy.Input{DecisionRequest: *r, Catalog: d.cats.For(r.Resource.Name, r.SQL.CatalogVersion)}
	return d.e.Decide(in, time.Now())
}

// heldCatalogs is the proxy's catalog sink in tests: straight to the decider's catalogs.
type heldCatalogs struct{ cats *policy.Catalogs }

func (h heldCatalogs) PutCatalog(_ context.Context, c *schemas.Catalog) error {
	h.cats.Set(c)
	return nil
}

type resources map[string]*config.Resource

func (r resources) Resource(name string) (*config.Resource, bool) { res, ok := r[name]; return res, ok }

type proxyEnv struct {
	host, port string
	token      string
	certFile   string
	pg         *localdb.Postgres
	rotFile    string
	bus        *bus.Bus
	mint       func(identity.TokenRequest) string
}

// connTo connects to another resource of the proxy.
func (e *proxyEnv) connTo(db, extra string) string {
	return fmt.Sprintf("host=%s port=%s dbname=%s user=app-svc password=%s %s", e.host, e.port, db, e.token, extra)
}

// backendGone reports whether the backend process pid has ended.
func (e *proxyEnv) backendGone(ctx context.Context, pid uint32) bool {
	d, err := pgconn.Connect(ctx, e.pg.SuperuserConnString("postgres"))
	if err != nil {
		return false
	}
	defer d.Close(ctx)
	r, err := d.Exec(ctx, fmt.Sprintf("select 1 from pg_stat_activity where pid = %d", pid)).ReadAll()
	return err == nil && len(r[0].Rows) == 0
}

func (e *proxyEnv) conn(extra string) string {
	return fmt.Sprintf("host=%s port=%s dbname=app user=app-svc password=%s %s", e.host, e.port, e.token, extra)
}

// startProxy runs the proxy in front of a real PostgreSQL with a real JetStream for events
// and an allow-everything-but-DROP policy.
func startProxy(t *testing.T, maxMessage int) *proxyEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logOut(), nil))
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, pg.Exec(ctx, "postgres", "CREATE ROLE app LOGIN PASSWORD 'app-secret'"))
	require.NoError(t, pg.Exec(ctx, "postgres", "CREATE DATABASE app OWNER app"))
	require.NoError(t, pg.Exec(ctx, "app", "CREATE TABLE items (id int PRIMARY KEY, name text); ALTER TABLE items OWNER TO app; GRANT pg_signal_backend TO app"))
	require.NoError(t, pg.Exec(ctx, "app", maskFixture))
	// Other backend authentication methods, and a role whose password is rotated.
	require.NoError(t, pg.Exec(ctx, "postgres", "SET password_encryption = 'md5'; CREATE ROLE app_md5 LOGIN PASSWORD 'md5-secret'"))
	require.NoError(t, pg.Exec(ctx, "postgres", "CREATE ROLE app_trust LOGIN; CREATE ROLE app_rot LOGIN PASSWORD 'rot-1'"))
	require.NoError(t, pg.PrependHBA(ctx, "host all app_md5 127.0.0.1/32 md5", "host all app_trust 127.0.0.1/32 trust"))
	rotFile := filepath.Join(t.TempDir(), "rot-password")
	require.NoError(t, os.WriteFile(rotFile, []byte("rot-1\n"), 0o600))

	b := bustest.Connect(t)
	pub := session.NewPublisher(b.JS, session.PublisherOptions{Spool: 10000, Wait: 5 * time.Second, Linger: 5 * time.Millisecond}, prometheus.NewRegistry(), log)
	t.Cleanup(func() { _ = pub.Close(context.Background()) })

	e := echo.New()
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	dev, err := identity.NewDevIssuer(hs.URL+identity.DevIssuerPath, t.TempDir(), log)
	require.NoError(t, err)
	dev.Register(e)
	v := identity.NewVerifier(t.Context(), []config.Issuer{{Issuer: dev.Issuer(), Audience: identity.DevAudience, GroupsClaim: "groups"}}, log)
	tok, err := dev.Mint(identity.TokenRequest{Subject: "app-svc", Groups: []string{"app"}})
	require.NoError(t, err)

	eng, err := policy.Compile([]config.Policy{{Name: "test", Resources: []string{"*"}, Rules: []config.Rule{
		{Name: "all", Effect: "allow", When: "true"},
		{Name: "no-drop", Effect: "deny", When: `request.sql.kinds.exists(k, k.startsWith("drop")) && "public.items" in request.sql.tables`, Reason: "no drops in tests"},
		{Name: "keep-large-objects", Effect: "deny", When: `"lo_unlink" in request.sql.functions`, Reason: "large objects are kept"},
	}}, {Name: "masking", Resources: []string{"app-masked"}, Rules: maskRules},
		{Name: "by-table", Resources: []string{"app-tables"}, Rules: tableMaskRules}}, 1)
	require.NoError(t, err)

	cats := &policy.Catalogs{OnError: func(r string, err error) { t.Errorf("catalog of %s: %v", r, err) }}

	certDir := t.TempDir()
	certFile, keyFile, err := devcert.Ensure(certDir)
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)

	backend := func(user, password, file string) *config.PostgresBackend {
		return &config.PostgresBackend{Address: pg.Addr(), Database: "app", User: user, Password: password, PasswordFile: file, SSLMode: "disable"}
	}
	res := resources{
		"app":        {Name: "app", Type: "postgres", Audit: "buffered", Postgres: backend("app", "app-secret", "")},
		"app-md5":    {Name: "app-md5", Type: "postgres", Audit: "buffered", Postgres: backend("app_md5", "md5-secret", "")},
		"app-trust":  {Name: "app-trust", Type: "postgres", Audit: "buffered", Postgres: backend("app_trust", "", "")},
		"app-rot":    {Name: "app-rot", Type: "postgres", Audit: "buffered", Postgres: backend("app_rot", "", rotFile)},
		"app-tls":    {Name: "app-tls", Type: "postgres", Audit: "strict", RequireTLS: true, Postgres: backend("app", "app-secret", "")},
		"app-masked": {Name: "app-masked", Type: "postgres", Audit: "buffered", Postgres: backend("app", "app-secret", "")},
		"app-tables": {Name: "app-tables", Type: "postgres", Audit: "buffered", Postgres: backend("app", "app-secret", "")},
		"app-long": {Name: "app-long", Type: "postgres", Audit: "buffered", TokenExpiry: "continue", MaxSessionLifetime: 4 * time.Second,
			Postgres: backend("app", "app-secret", "")},
	}
	srv := postgres.New(postgres.Config{Listen: "127.0.0.1:0", MaxMessageBytes: maxMessage, StartupTimeout: 10 * time.Second,
		TLS:     &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"postgresql"}},
		Limits:  session.Limits{ResultChunkBytes: 64 << 10, MaxResultBytes: 1 << 20, MaxSQLBytes: 64 << 10},
		MaskKey: []byte(testMaskKey)},
		res, v, pub, engineDecider{eng, cats}, prometheus.NewRegistry(), log)
	srv.SetCatalogSink(heldCatalogs{cats})
	require.NoError(t, srv.Sessions().Follow(t.Context(), b.JS))
	require.NoError(t, srv.Listen())
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx); close(done) }()
	t.Cleanup(func() {
		stop()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	host, port, _ := net.SplitHostPort(srv.Addr())
	mint := func(r identity.TokenRequest) string {
		tok, err := dev.Mint(r)
		require.NoError(t, err)
		return tok
	}
	return &proxyEnv{host: host, port: port, token: tok, certFile: certFile, pg: pg, rotFile: rotFile, bus: b, mint: mint}
}

func TestProxyFidelity(t *testing.T) {
	env := startProxy(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("TLS via SSLRequest, verify-full", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("host=localhost port=%s dbname=app user=app-svc password=%s sslmode=verify-full sslrootcert=%s", env.port, env.token, env.certFile))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, isTLS := c.Conn().(*tls.Conn)
		require.True(t, isTLS)
		_, err = c.Exec(ctx, "select 1").ReadAll()
		require.NoError(t, err)
	})
	t.Run("TLS direct (PG17 sslnegotiation=direct, ALPN)", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=require sslnegotiation=direct"))
		require.NoError(t, err)
		defer c.Close(ctx)
		tc, isTLS := c.Conn().(*tls.Conn)
		require.True(t, isTLS)
		require.Equal(t, "postgresql", tc.ConnectionState().NegotiatedProtocol)
	})
	t.Run("psql with sslmode=require", func(t *testing.T) {
		cmd := exec.Command("psql", "-X", "-At", fmt.Sprintf("host=%s port=%s dbname=app user=app-svc sslmode=require", env.host, env.port), "-c", "select 40 + 2")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+env.token)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		require.Equal(t, "42", strings.TrimSpace(string(out)))
	})
	t.Run("GSSENCRequest is answered N and the client falls back", func(t *testing.T) {
		c, err := net.Dial("tcp", net.JoinHostPort(env.host, env.port))
		require.NoError(t, err)
		defer c.Close()
		pkt := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877104)
		_, err = c.Write(pkt)
		require.NoError(t, err)
		var b [1]byte
		_, err = io.ReadFull(c, b[:])
		require.NoError(t, err)
		require.Equal(t, byte('N'), b[0])
	})
	t.Run("protocol 3.2 and unknown _pq_ options are negotiated, not refused", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable max_protocol_version=3.2"))
		require.NoError(t, err)
		_, err = c.Exec(ctx, "select 1").ReadAll()
		require.NoError(t, err)
		c.Close(ctx)

		raw, err := net.Dial("tcp", net.JoinHostPort(env.host, env.port))
		require.NoError(t, err)
		defer raw.Close()
		sm, err := (&pgproto3.StartupMessage{ProtocolVersion: 3<<16 | 2, Parameters: map[string]string{"user": "app-svc", "database": "app", "_pq_.future_feature": "on"}}).Encode(nil)
		require.NoError(t, err)
		_, err = raw.Write(sm)
		require.NoError(t, err)
		fe := pgproto3.NewFrontend(raw, raw)
		msg, err := fe.Receive()
		require.NoError(t, err)
		npv, ok := msg.(*pgproto3.NegotiateProtocolVersion)
		require.True(t, ok, "got %T", msg)
		require.Equal(t, uint32(0), npv.NewestMinorProtocol)
		require.Equal(t, []string{"_pq_.future_feature"}, npv.UnrecognizedOptions)
	})
	t.Run("startup parameters reach the backend, application_name names the caller", func(t *testing.T) {
		c, err := pgx.Connect(ctx, env.conn("sslmode=disable application_name=billing options='-c search_path=pg_catalog,public'"))
		require.NoError(t, err)
		defer c.Close(ctx)
		var sp, app string
		require.NoError(t, c.QueryRow(ctx, "select current_setting('search_path'), current_setting('application_name')").Scan(&sp, &app))
		require.Equal(t, "pg_catalog,public", sp)
		require.Equal(t, "gatehouse:app-svc billing", app)
		// BackendKeyData carries the real backend PID.
		var pid uint32
		require.NoError(t, c.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))
		require.Equal(t, c.PgConn().PID(), pid)
	})
	t.Run("cancel reaches the right backend; a forged key does nothing", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer c.Close(ctx)
		errc := make(chan error, 1)
		go func() { _, err := c.Exec(ctx, "select pg_sleep(30)").ReadAll(); errc <- err }()
		// Wait until the backend is really running the sleep.
		require.Eventually(t, func() bool {
			d, err := pgconn.Connect(ctx, env.pg.SuperuserConnString("app"))
			if err != nil {
				return false
			}
			defer d.Close(ctx)
			r, err := d.Exec(ctx, fmt.Sprintf("select 1 from pg_stat_activity where pid = %d and query like 'select pg_sleep%%'", c.PID())).ReadAll()
			return err == nil && len(r[0].Rows) == 1
		}, 10*time.Second, 20*time.Millisecond)
		forge(t, env, c.PID())
		select {
		case err := <-errc:
			t.Fatalf("a forged cancel key cancelled the statement: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		require.NoError(t, c.CancelRequest(ctx))
		select {
		case err := <-errc:
			var pe *pgconn.PgError
			require.True(t, errors.As(err, &pe), "%v", err)
			require.Equal(t, "57014", pe.Code)
		case <-time.After(10 * time.Second):
			t.Fatal("cancel did not reach the backend")
		}
	})
	t.Run("LISTEN/NOTIFY", func(t *testing.T) {
		got := make(chan string, 1)
		cfg, err := pgconn.ParseConfig(env.conn("sslmode=disable"))
		require.NoError(t, err)
		cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { got <- n.Payload }
		l, err := pgconn.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		defer l.Close(ctx)
		l2, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer l2.Close(ctx)
		_, err = l.Exec(ctx, "listen jobs").ReadAll()
		require.NoError(t, err)
		_, err = l2.Exec(ctx, "notify jobs, 'job-1'").ReadAll()
		require.NoError(t, err)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		require.NoError(t, l.WaitForNotification(wctx))
		require.Equal(t, "job-1", <-got)
	})
	t.Run("COPY FROM STDIN and TO STDOUT with psql", func(t *testing.T) {
		cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", fmt.Sprintf("host=%s port=%s dbname=app user=app-svc sslmode=disable", env.host, env.port),
			"-c", `\copy items from stdin with (format csv)`)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+env.token)
		var in bytes.Buffer
		for i := 1; i <= 5000; i++ {
			fmt.Fprintf(&in, "%d,item %d\n", i, i)
		}
		cmd.Stdin = &in
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "COPY 5000")
		cmd = exec.Command("psql", "-X", fmt.Sprintf("host=%s port=%s dbname=app user=app-svc sslmode=disable", env.host, env.port),
			"-c", `\copy (select * from items order by id) to stdout with (format csv)`)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+env.token)
		out, err = cmd.Output()
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Len(t, lines, 5000)
		require.Equal(t, "5000,item 5000", lines[4999])
	})
	t.Run("pipeline: the gateway's own refusals fail the pipeline's transaction as PostgreSQL's errors do", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "create table limits_t (v int)").ReadAll()
		require.NoError(t, err)
		defer func() { _, _ = c.Exec(ctx, "drop table limits_t").ReadAll() }()
		// Fill the session's table of prepared statements to its limit (10,000 names,
		// the gateway's own included): the Parse past it is refused.
		p := c.StartPipeline(ctx)
		for i := range 10001 {
			p.SendPrepare(fmt.Sprintf("s%d", i), "select 1", nil)
		}
		require.NoError(t, p.Sync())
		var res any
		var pe *pgconn.PgError
		for {
			res, err = p.GetResults()
			if _, ok := res.(*pgconn.PipelineSync); ok {
				break
			}
			if err != nil {
				require.True(t, errors.As(err, &pe), "%v", err)
				require.Equal(t, "53400", pe.Code)
			}
		}
		require.NotNil(t, pe, "the limit was reached")
		// An insert, then a Parse over the limit, in one pipeline: the insert is rolled
		// back with it, as PostgreSQL rolls back an implicit transaction that failed.
		p.SendQueryParams("insert into limits_t values (1)", nil, nil, nil, nil)
		p.SendPrepare("one-too-many", "select 1", nil)
		require.NoError(t, p.Sync())
		res, err = p.GetResults()
		require.NoError(t, err)
		require.NoError(t, res.(*pgconn.ResultReader).Read().Err)
		_, err = p.GetResults()
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "53400", pe.Code)
		for {
			res, err = p.GetResults()
			if _, ok := res.(*pgconn.PipelineSync); ok || err != nil {
				break
			}
		}
		require.NoError(t, p.Close())
		r := c.Exec(ctx, "select count(*) from limits_t")
		rows, err := r.ReadAll()
		require.NoError(t, err)
		require.Equal(t, "0", string(rows[0].Rows[0][0]), "the failed pipeline's insert is rolled back")
	})
	t.Run("pipeline: errors in the middle and recovery; a denied Parse answers in order", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer c.Close(ctx)
		p := c.StartPipeline(ctx)
		p.SendQueryParams("select 1", nil, nil, nil, nil)
		p.SendQueryParams("select 1/0", nil, nil, nil, nil)
		p.SendQueryParams("select 3", nil, nil, nil, nil)
		require.NoError(t, p.Sync())
		res, err := p.GetResults()
		require.NoError(t, err)
		r := res.(*pgconn.ResultReader).Read()
		require.NoError(t, r.Err)
		require.Equal(t, "1", string(r.Rows[0][0]))
		var pe *pgconn.PgError
		res, err = p.GetResults()
		if err == nil {
			err = res.(*pgconn.ResultReader).Read().Err
		}
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "22012", pe.Code)
		res, err = p.GetResults()
		require.NoError(t, err)
		_, isSync := res.(*pgconn.PipelineSync)
		require.True(t, isSync, "the statement after the error is skipped up to Sync, got %T", res)

		p.SendQueryParams("select 4", nil, nil, nil, nil)
		p.SendQueryParams("drop table items", nil, nil, nil, nil)
		p.SendQueryParams("select 6", nil, nil, nil, nil)
		require.NoError(t, p.Sync())
		res, err = p.GetResults()
		require.NoError(t, err)
		r = res.(*pgconn.ResultReader).Read()
		require.NoError(t, r.Err)
		require.Equal(t, "4", string(r.Rows[0][0]))
		res, err = p.GetResults()
		if err == nil {
			err = res.(*pgconn.ResultReader).Read().Err
		}
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "42501", pe.Code)
		require.Contains(t, pe.Message, "no drops in tests")
		for {
			res, err = p.GetResults()
			require.NoError(t, err)
			if _, ok := res.(*pgconn.PipelineSync); ok {
				break
			}
			require.NotNil(t, res, "pipeline ended without its Sync")
		}
		require.NoError(t, p.Close())
		rr, err := c.Exec(ctx, "select count(*) from items").ReadAll()
		require.NoError(t, err, "the connection works after the pipeline")
		require.Len(t, rr, 1)
	})
	t.Run("a refused statement fails the transaction as PostgreSQL would", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer c.Close(ctx)
		count := func() string {
			r, err := c.Exec(ctx, "select count(*) from items where id >= 900000").ReadAll()
			require.NoError(t, err)
			return string(r[0].Rows[0][0])
		}
		// Simple protocol, explicit transaction.
		_, err = c.Exec(ctx, "begin; insert into items values (900001, 'tx')").ReadAll()
		require.NoError(t, err)
		_, err = c.Exec(ctx, "drop table items").ReadAll()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "42501", pe.Code)
		require.Contains(t, pe.Message, "no drops in tests")
		require.Equal(t, byte('E'), c.TxStatus(), "the transaction is failed, as after any error")
		res, err := c.Exec(ctx, "commit").ReadAll()
		require.NoError(t, err)
		require.Equal(t, "ROLLBACK", res[0].CommandTag.String())
		require.Equal(t, "0", count())

		// Extended protocol: a pipeline's implicit transaction is rolled back too.
		p := c.StartPipeline(ctx)
		p.SendQueryParams("insert into items values (900002, 'pipe')", nil, nil, nil, nil)
		p.SendQueryParams("drop table items", nil, nil, nil, nil)
		require.NoError(t, p.Sync())
		res2, err := p.GetResults()
		require.NoError(t, err)
		require.NoError(t, res2.(*pgconn.ResultReader).Read().Err)
		res2, err = p.GetResults()
		if err == nil {
			err = res2.(*pgconn.ResultReader).Read().Err
		}
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "42501", pe.Code)
		res2, err = p.GetResults()
		require.NoError(t, err)
		_, isSync := res2.(*pgconn.PipelineSync)
		require.True(t, isSync, "got %T", res2)
		require.NoError(t, p.Close())
		require.Equal(t, "0", count(), "the insert before the refused statement was rolled back with it")
	})
	t.Run("fresh connections always get the answer to their first pipeline", func(t *testing.T) {
		// Regression: pgconn's background reader could keep reading the backend socket after
		// the proxy took it over, swallowing the first answers (about 1 session in 100).
		const workers, each = 8, 40
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			go func() {
				for i := 0; i < each; i++ {
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					c, err := pgconn.Connect(cctx, env.conn("sslmode=disable"))
					if err == nil {
						_, err = c.Prepare(cctx, "", "select $1::int + 1", nil)
						c.Close(cctx)
					}
					cancel()
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
				}
				errs <- nil
			}()
		}
		for w := 0; w < workers; w++ {
			require.NoError(t, <-errs)
		}
	})
	t.Run("FunctionCall (libpq large objects via psql) is decided by function name", func(t *testing.T) {
		psql := func(cmd string) (string, error) {
			c := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", fmt.Sprintf("host=%s port=%s dbname=app user=app-svc sslmode=disable", env.host, env.port), "-c", cmd)
			c.Env = append(os.Environ(), "PGPASSWORD="+env.token)
			out, err := c.CombinedOutput()
			return string(out), err
		}
		src := filepath.Join(t.TempDir(), "in.bin")
		data := bytes.Repeat([]byte("large object through the gateway\n"), 4096)
		require.NoError(t, os.WriteFile(src, data, 0o644))
		out, err := psql(`\lo_import ` + src)
		require.NoError(t, err, out)
		var oid uint32
		_, err = fmt.Sscanf(strings.TrimSpace(out), "lo_import %d", &oid)
		require.NoError(t, err, out)
		dst := filepath.Join(t.TempDir(), "out.bin")
		out, err = psql(fmt.Sprintf(`\lo_export %d %s`, oid, dst))
		require.NoError(t, err, out)
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, data, got, "the large object made the round trip")
		out, err = psql(fmt.Sprintf(`\lo_unlink %d`, oid))
		require.Error(t, err)
		require.Contains(t, out, "rule keep-large-objects")
		// Where masking applies, a fast-path result (one value of no column, here binary)
		// cannot be masked: the call is refused, SELECT works and is masked.
		c := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", fmt.Sprintf("host=%s port=%s dbname=app-masked user=app-svc sslmode=disable", env.host, env.port),
			"-c", fmt.Sprintf(`\lo_export %d %s`, oid, filepath.Join(t.TempDir(), "masked.bin")))
		c.Env = append(os.Environ(), "PGPASSWORD="+env.token)
		masked, err := c.CombinedOutput()
		require.Error(t, err, string(masked))
		require.Contains(t, string(masked), "a fast-path function call's result cannot be masked")
	})
	t.Run("pgbench in every query mode", func(t *testing.T) {
		out, err := pgbenchRun(env, "-i", "-q", "-s", "1", "app")
		require.NoError(t, err, out)
		for _, mode := range []string{"simple", "extended", "prepared"} {
			out, err := pgbenchRun(env, "-S", "-n", "-M", mode, "-c", "4", "-j", "2", "-t", "200", "app")
			require.NoError(t, err, out)
			require.Contains(t, out, "number of failed transactions: 0", mode)
		}
	})
	t.Run("backend authentication: md5 and trust; a rotated password is used without restart", func(t *testing.T) {
		for db, user := range map[string]string{"app-md5": "app_md5", "app-trust": "app_trust", "app-rot": "app_rot"} {
			c, err := pgx.Connect(ctx, env.connTo(db, "sslmode=disable"))
			require.NoError(t, err, db)
			var got string
			require.NoError(t, c.QueryRow(ctx, "select current_user").Scan(&got))
			require.Equal(t, user, got)
			c.Close(ctx)
		}
		require.NoError(t, env.pg.Exec(ctx, "postgres", "ALTER ROLE app_rot PASSWORD 'rot-2'"))
		_, err := pgconn.Connect(ctx, env.connTo("app-rot", "sslmode=disable"))
		require.Error(t, err, "the old secret no longer works")
		require.NoError(t, os.WriteFile(env.rotFile, []byte("rot-2"), 0o600))
		c, err := pgconn.Connect(ctx, env.connTo("app-rot", "sslmode=disable"))
		require.NoError(t, err, "the rotated secret is picked up by the next backend connection")
		c.Close(ctx)
	})
	t.Run("a resource that requires TLS refuses plain connections with 28000", func(t *testing.T) {
		_, err := pgconn.Connect(ctx, env.connTo("app-tls", "sslmode=disable"))
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "28000", pe.Code)
		require.Contains(t, pe.Message, "requires TLS")
		c, err := pgconn.Connect(ctx, env.connTo("app-tls", "sslmode=require"))
		require.NoError(t, err)
		c.Close(ctx)
	})
	t.Run("psql Ctrl-C cancels the running statement", func(t *testing.T) {
		cmd := exec.Command("psql", "-X", fmt.Sprintf("host=%s port=%s dbname=app user=app-svc sslmode=disable application_name=ctrlc", env.host, env.port), "-c", "select pg_sleep(60)")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+env.token)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool {
			d, err := pgconn.Connect(ctx, env.pg.SuperuserConnString("postgres"))
			if err != nil {
				return false
			}
			defer d.Close(ctx)
			r, err := d.Exec(ctx, "select 1 from pg_stat_activity where application_name like '%ctrlc' and query like 'select pg_sleep%'").ReadAll()
			return err == nil && len(r[0].Rows) == 1
		}, 10*time.Second, 20*time.Millisecond)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.Error(t, err)
			require.Contains(t, out.String(), "canceling statement due to user request")
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("psql's cancel did not reach the backend")
		}
	})
	t.Run("pg_terminate_backend(pg_backend_pid()) ends the session as PostgreSQL does", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "select pg_terminate_backend(pg_backend_pid())").ReadAll()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "57P01", pe.Code)
	})
	t.Run("cancels racing statement completion never confuse the proxy", func(t *testing.T) {
		const conns, rounds = 16, 40
		errs := make(chan error, conns)
		for i := 0; i < conns; i++ {
			go func() {
				c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
				if err != nil {
					errs <- err
					return
				}
				defer c.Close(ctx)
				for r := 0; r < rounds; r++ {
					go func() { _ = c.CancelRequest(ctx) }()
					_, err := c.Exec(ctx, fmt.Sprintf("select pg_sleep(0.00%d), %d", r%3, r)).ReadAll()
					var pe *pgconn.PgError
					if err != nil && !(errors.As(err, &pe) && pe.Code == "57014") {
						errs <- fmt.Errorf("round %d: %w", r, err)
						return
					}
				}
				// The connection is still in step: a statement and its own answer.
				for {
					res, err := c.Exec(ctx, "select 'still-here'").ReadAll()
					var pe *pgconn.PgError
					if errors.As(err, &pe) && pe.Code == "57014" {
						continue // a late cancel
					}
					if err == nil && string(res[0].Rows[0][0]) != "still-here" {
						err = fmt.Errorf("out of step: got %q", res[0].Rows[0][0])
					}
					errs <- err
					return
				}
			}()
		}
		for i := 0; i < conns; i++ {
			require.NoError(t, <-errs)
		}
	})
	t.Run("a client that disconnects in the middle of a large result frees its backend", func(t *testing.T) {
		c, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		pid := c.PID()
		rr := c.Exec(ctx, "select repeat('x', 1000) from generate_series(1, 5000000)")
		require.True(t, rr.NextResult())
		res := rr.ResultReader()
		for i := 0; i < 100 && res.NextRow(); i++ {
		}
		require.NoError(t, c.Conn().Close()) // abrupt: no Terminate
		require.Eventually(t, func() bool { return env.backendGone(ctx, pid) }, 30*time.Second, 100*time.Millisecond)
	})
	t.Run("a syntax error answers as PostgreSQL does, with the position psql points at", func(t *testing.T) {
		direct, err := pgconn.Connect(ctx, env.pg.ConnString("app", "app-secret", "app"))
		require.NoError(t, err)
		defer direct.Close(ctx)
		proxied, err := pgconn.Connect(ctx, env.conn("sslmode=disable"))
		require.NoError(t, err)
		defer proxied.Close(ctx)
		pgErr := func(err error) [3]string {
			var pe *pgconn.PgError
			require.True(t, errors.As(err, &pe), "%v", err)
			return [3]string{pe.Code, pe.Message, fmt.Sprint(pe.Position)}
		}
		for _, sql := range []string{"selec 1", "select 1; selec 2; select 3", "select 'é', 'ü' frm items", "select (1", "select 1 'abc'", "select 1 'xyzzy'"} {
			want := pgErr(direct.Exec(ctx, sql).Close())
			require.NotEqual(t, "0", want[2], "PostgreSQL reports a position for %q", sql)
			require.Equal(t, want, pgErr(proxied.Exec(ctx, sql).Close()), "simple protocol: %q", sql)
			_, err := proxied.ExecParams(ctx, sql, nil, nil, nil, nil).Close()
			require.Equal(t, want, pgErr(err), "extended protocol: %q", sql)
		}
		psql := func(conn, password string) string {
			cmd := exec.Command("psql", "-X", conn, "-c", "select 1 as a,\n  2 frm items")
			cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
			out, _ := cmd.CombinedOutput()
			return string(out)
		}
		want := psql(fmt.Sprintf("host=127.0.0.1 port=%d dbname=app user=app sslmode=disable", env.pg.Port), "app-secret")
		require.Contains(t, want, "LINE 2:")
		require.Equal(t, want, psql(fmt.Sprintf("host=%s port=%s dbname=app user=app-svc sslmode=disable", env.host, env.port), env.token))
	})
	t.Run("a message over the limit ends the session with a clear error", func(t *testing.T) {
		small := startProxy(t, 4096)
		c, err := pgconn.Connect(ctx, small.conn("sslmode=disable"))
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "select '"+strings.Repeat("x", 8000)+"'").ReadAll()
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, "08P01", pe.Code)
		require.Contains(t, pe.Message, "exceeds the gateway's limit")
	})
}

// forge sends a CancelRequest with the right PID and a wrong secret.
func forge(t *testing.T, env *proxyEnv, pid uint32) {
	c, err := net.Dial("tcp", net.JoinHostPort(env.host, env.port))
	require.NoError(t, err)
	defer c.Close()
	msg, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	require.NoError(t, err)
	_, err = c.Write(msg)
	require.NoError(t, err)
}

func pgbenchRun(env *proxyEnv, args ...string) (string, error) {
	cmd := exec.Command("pgbench", append([]string{"-h", env.host, "-p", env.port, "-U", "app-svc"}, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+env.token, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// logOut is where the proxy under test logs: nowhere, unless GH_TEST_LOG is set.
func logOut() io.Writer {
	if os.Getenv("GH_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}
