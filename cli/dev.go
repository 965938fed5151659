package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse/gatehouse/app"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/dev/localdb"
	"github.com/gatehouse/gatehouse/services/seal"
)

// DemoSchema is the demo database: customers with sensitive columns, and orders.
const DemoSchema = `
CREATE TABLE IF NOT EXISTS customers (
  id          serial PRIMARY KEY,
  name        text NOT NULL,
  email       text NOT NULL,
  card_number text NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
  id          serial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers(id),
  item        text NOT NULL,
  amount      numeric(10,2) NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (name, email, card_number)
SELECT * FROM (VALUES
  ('Ada Lovelace',   'ada@example.com',     '4111111111111111'),
  ('Alan Turing',    'alan@example.com',    '5500005555555559'),
  ('Grace Hopper',   'grace@example.com',   '340000000000009'),
  ('Edsger Dijkstra','edsger@example.com',  '6011000000000004'),
  ('Barbara Liskov', 'barbara@example.com', '4012888888881881')
) v WHERE NOT EXISTS (SELECT 1 FROM customers);
INSERT INTO orders (customer_id, item, amount)
SELECT * FROM (VALUES
  (1, 'analytical engine', 1843.00), (2, 'bombe rotor', 1940.50), (3, 'compiler manual', 59.99),
  (4, 'semaphore kit', 19.68), (5, 'CLU textbook', 74.00), (1, 'punch cards (1000)', 12.34),
  (2, 'enigma spare', 99.00), (3, 'COBOL reference', 45.00), (4, 'shortest path poster', 8.50),
  (5, 'abstraction mug', 14.20)
) v WHERE NOT EXISTS (SELECT 1 FROM orders);
`

func devCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stdout)
	cfgPath := fs.String("config", "deploy/gatehouse.dev.yaml", "demo config file")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := NewLogger(cfg.Log, stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()

	if cfg.ClickHouse.Address == "" {
		fmt.Fprintln(stderr, "starting local ClickHouse ...")
		ch, err := localdb.StartClickHouse(ctx, filepath.Join(cfg.DataDir, "clickhouse"), 0)
		if err != nil {
			return fmt.Errorf("local ClickHouse: %w", err)
		}
		defer ch.Stop()
		cfg.ClickHouse.Address = ch.Addr()
	}
	if res, ok := cfg.Resource("demo"); ok && res.Postgres != nil && res.Postgres.Address == "" {
		fmt.Fprintln(stderr, "starting demo PostgreSQL ...")
		pgDir, err := localdb.DataDir(filepath.Join(cfg.DataDir, "postgres"))
		if err != nil {
			return fmt.Errorf("demo PostgreSQL: %w", err)
		}
		if pgDir != filepath.Join(cfg.DataDir, "postgres") {
			fmt.Fprintf(stderr, "%s is not reachable by the postgres user; PostgreSQL data goes to %s\n", cfg.DataDir, pgDir)
		}
		pg, err := localdb.StartPostgres(ctx, pgDir, 0)
		if err != nil {
			return fmt.Errorf("demo PostgreSQL: %w", err)
		}
		defer pg.Stop()
		pwFile := filepath.Join(cfg.DataDir, "demo-pg-password")
		if err := SeedDemo(ctx, pg, res.Postgres.User, res.Postgres.Database, pwFile); err != nil {
			return fmt.Errorf("seed demo database: %w", err)
		}
		res.Postgres.Address, res.Postgres.PasswordFile, res.Postgres.Password = pg.Addr(), pwFile, ""
	}
	demoHost, err := startDemoHost(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if demoHost != nil {
		defer demoHost.Stop()
	}
	demoAPI, err := startDemoAPI(cfg)
	if err != nil {
		return err
	}
	if demoAPI != nil {
		defer demoAPI.Stop()
	}
	if cfg.Proxy.Postgres.TLSCertFile == "" {
		if cfg.Proxy.Postgres.TLSCertFile, cfg.Proxy.Postgres.TLSKeyFile, err = devcert.Ensure(cfg.DataDir); err != nil {
			return fmt.Errorf("dev TLS certificate: %w", err)
		}
	}
	cfg.SeedOverwrite = true // the file is the demo's source of truth
	if cfg.Proxy.MaskKeyFile == "" {
		if cfg.Proxy.MaskKeyFile, err = ensureKeyFile(filepath.Join(cfg.DataDir, "mask.key")); err != nil {
			return fmt.Errorf("dev mask key: %w", err)
		}
	}
	if cfg.Audit.SigningKeyFile == "" {
		cfg.Audit.SigningKeyFile = filepath.Join(cfg.DataDir, "audit-signing.key")
		if _, err := seal.LoadKey(cfg.Audit.SigningKeyFile, true); err != nil {
			return fmt.Errorf("dev audit signing key: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	a := app.New(cfg, log)
	go announce(ctx, a, cfg, stdout)
	err = a.Run(ctx, []string{"all"})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// SeedDemo creates the demo role (SCRAM-SHA-256 password kept in pwFile), database and data.
func SeedDemo(ctx context.Context, pg *localdb.Postgres, role, database, pwFile string) error {
	pw, err := os.ReadFile(pwFile)
	if errors.Is(err, os.ErrNotExist) {
		var b [18]byte
		_, _ = rand.Read(b[:])
		pw = []byte(hex.EncodeToString(b[:]))
		if err := os.WriteFile(pwFile, pw, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	secret := strings.TrimSpace(string(pw))
	su, err := pgconn.Connect(ctx, pg.SuperuserConnString("postgres"))
	if err != nil {
		return err
	}
	defer su.Close(ctx)
	quoted := "'" + strings.ReplaceAll(secret, "'", "''") + "'"
	if _, err := su.Exec(ctx, fmt.Sprintf(`SET password_encryption = 'scram-sha-256';
		DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF; END $$;
		ALTER ROLE %[1]s PASSWORD %[2]s`, role, quoted)).ReadAll(); err != nil {
		return fmt.Errorf("demo role: %w", err)
	}
	res, err := su.Exec(ctx, fmt.Sprintf("SELECT 1 FROM pg_database WHERE datname = '%s'", database)).ReadAll()
	if err != nil {
		return err
	}
	if len(res[0].Rows) == 0 {
		if _, err := su.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", database, role)).ReadAll(); err != nil {
			return fmt.Errorf("demo database: %w", err)
		}
	}
	c, err := pgconn.Connect(ctx, pg.ConnString(role, secret, database))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, DemoSchema).ReadAll()
	return err
}

// announce prints how to connect once the app is ready.
func announce(ctx context.Context, a *app.App, cfg *config.Config, w io.Writer) {
	for !a.Ready() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	base := "http://" + a.HTTPAddr()
	if resp, err := http.Get(base + "/readyz"); err == nil {
		resp.Body.Close()
	}
	b := bannerFor(cfg, a.ListenAddr("postgres"), base, a.NATSURL(), a.DevIssuerURL())
	b.SSH = a.ListenAddr("ssh")
	b.HTTPProxy = a.ListenAddr("http")
	b.write(w)
}

// bannerFor is the banner of a gateway running cfg; devIssuerURL is where its development
// issuer is, when cfg enables one.
func bannerFor(cfg *config.Config, pg, api, nats, devIssuerURL string) banner {
	b := banner{DataDir: cfg.DataDir, Postgres: pg, HTTP: api, NATS: nats,
		TLSCert: cfg.Proxy.Postgres.TLSCertFile, Issuers: cfg.Identity.Issuers}
	_, b.DemoHost = cfg.Resource(demoHostName)
	_, b.DemoAPI = cfg.Resource(demoAPIName)
	if cfg.Identity.DevIssuer {
		b.DevIssuer = devIssuerURL
	}
	if !cfg.Console.Disabled {
		b.Console = api + "/"
	}
	return b
}

// banner is what `gatehouse dev` announces once it is ready.
type banner struct {
	DataDir, Postgres, HTTP, NATS, TLSCert string
	// DevIssuer is the development issuer's URL, empty when it is off (dev_issuer: false):
	// then tokens come from Issuers, and the banner must not offer `token --dev`.
	DevIssuer string
	Issuers   []config.Issuer
	// SSH is the SSH proxy's address (empty: not running); DemoHost says the demo SSH
	// host is configured.
	SSH      string
	DemoHost bool
	// HTTPProxy is the HTTP proxy's address (empty: not running); DemoAPI says the demo
	// HTTP service is configured.
	HTTPProxy string
	DemoAPI   bool
	// Console is the web console's URL (empty: off).
	Console string
}

func (b *banner) write(w io.Writer) {
	host, port := splitHostPort(b.Postgres)
	fmt.Fprintf(w, "\nGatehouse is running (development mode; data in %s).\n\n", b.DataDir)
	fmt.Fprintf(w, "  PostgreSQL proxy   %s\n", b.Postgres)
	if b.SSH != "" {
		fmt.Fprintf(w, "  SSH proxy          %s\n", b.SSH)
	}
	if b.HTTPProxy != "" {
		fmt.Fprintf(w, "  HTTP proxy         https://%s   (HTTP services, the Kubernetes API)\n", b.HTTPProxy)
	}
	if b.Console != "" {
		who := ""
		if b.DevIssuer != "" {
			who = "   (sign in as alice@example.com to approve, bob@example.com to audit)"
		}
		fmt.Fprintf(w, "  web console        %s%s\n", b.Console, who)
	}
	fmt.Fprintf(w, "  HTTP API / health  %s   (GET /readyz, /metrics)\n", b.HTTP)
	if b.DevIssuer != "" {
		fmt.Fprintf(w, "  dev OIDC issuer    %s   (development only)\n", b.DevIssuer)
	}
	for _, is := range b.Issuers {
		fmt.Fprintf(w, "  token issuer       %s   (audience %s)\n", is.Issuer, strings.Join(is.AcceptedAudiences(), ", "))
	}
	fmt.Fprintf(w, "  NATS (embedded)    %s\n\nTry it:\n", b.NATS)
	service, auditor := "$(bin/gatehouse token --dev --sub svc-orders --groups orders-readers)", "$(bin/gatehouse token --dev --sub auditor --groups auditors)"
	if b.DevIssuer == "" {
		// No development issuer: the tokens come from the configured IdP.
		fmt.Fprintf(w, "  # tokens come from your IdP (dev_issuer is off); docs/identity.md says how to get\n")
		fmt.Fprintf(w, "  # one whose audience is the gateway's\n")
		service, auditor = "<an access token for a service>", "<an access token of someone in an auditor group>"
	}
	fmt.Fprintf(w, "  export PGPASSWORD=%s\n", service)
	fmt.Fprintf(w, "  psql \"host=%s port=%s dbname=demo user=svc-orders\" -c 'select * from orders limit 3'\n", host, port)
	fmt.Fprintf(w, "  psql \"host=%s port=%s dbname=demo user=svc-orders\" -c 'drop table orders'      # denied: 42501\n", host, port)
	fmt.Fprintf(w, "  # TLS: sslmode=verify-full sslrootcert=%s\n\n", b.TLSCert)
	if b.DemoHost && b.DevIssuer != "" {
		fmt.Fprintf(w, "  # SSH: demo-host is this machine, as root; ops may run read-only tools, a shell waits for an approval\n")
		fmt.Fprintf(w, "  export GATEHOUSE_TOKEN=$(bin/gatehouse token --dev --sub oncall --groups ops)\n")
		fmt.Fprintf(w, "  bin/gatehouse ssh login --gateway %s > %s\n", b.HTTP, filepath.Join(b.DataDir, "ssh_config"))
		fmt.Fprintf(w, "  ssh -F %s demo-host+root@gatehouse uptime\n", filepath.Join(b.DataDir, "ssh_config"))
		fmt.Fprintf(w, "  ssh -F %s demo-host+root@gatehouse 'rm -rf /tmp/x'      # denied\n\n", filepath.Join(b.DataDir, "ssh_config"))
	}
	if b.DemoAPI && b.HTTPProxy != "" && b.DevIssuer != "" {
		fmt.Fprintf(w, "  # HTTP: demo-api; card numbers and emails masked, refunds over 100 wait for an approval\n")
		fmt.Fprintf(w, "  curl --cacert %s -H \"Authorization: Bearer $PGPASSWORD\" https://%s/demo-api/customers\n", b.TLSCert, b.HTTPProxy)
		fmt.Fprintf(w, "  curl --cacert %s -H \"Authorization: Bearer $PGPASSWORD\" -X DELETE https://%s/demo-api/customers/1   # denied\n\n", b.TLSCert, b.HTTPProxy)
	}
	fmt.Fprintf(w, "  export GATEHOUSE_TOKEN=%s\n", auditor)
	fmt.Fprintf(w, "  bin/gatehouse sessions list\n  bin/gatehouse sessions replay <session id>\n\nStop with Ctrl-C.\n")
}

func splitHostPort(s string) (string, string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// ensureKeyFile creates a file holding 32 random bytes (hex) unless it exists, and returns
// its path.
func ensureKeyFile(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600)
}
