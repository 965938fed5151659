// Package config loads the single Gatehouse YAML file: environment expansion, strict
// decoding (unknown fields are errors), defaults, and validation that names the field path
// and the reason.
package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole Gatehouse configuration.
type Config struct {
	// DataDir holds embedded NATS JetStream storage, dev keys and local servers.
	DataDir    string     `yaml:"data_dir"`
	Log        Log        `yaml:"log"`
	Server     Server     `yaml:"server"`
	NATS       NATS       `yaml:"nats"`
	Identity   Identity   `yaml:"identity"`
	Proxy      Proxy      `yaml:"proxy"`
	Audit      Audit      `yaml:"audit"`
	ClickHouse ClickHouse `yaml:"clickhouse"`
	Ingest     Ingest     `yaml:"ingest"`
	Query      Query      `yaml:"query"`
	Resources  []Resource `yaml:"resources"`
	Policies   []Policy   `yaml:"policies"`
	// Grants are the roles that can be asked for, for a while, with an approval.
	Grants []GrantRole `yaml:"grants"`
	// Slack, when set, posts approvals to Slack and takes decisions from its buttons.
	Slack *Slack `yaml:"slack"`
	// Sinks push the audit trail to SIEMs.
	Sinks []Sink `yaml:"sinks"`
	// Tests are policy test cases, run by `gatehouse policy test -f FILE` (in CI, say).
	Tests []PolicyTest `yaml:"tests"`
	// TestCatalogs are the catalogs policy tests resolve statements against, by resource:
	// JSON files (schemas.Catalog) relative to the config file, as `gatehouse catalog
	// get --resource NAME` prints them from a running gateway.
	TestCatalogs map[string]string `yaml:"test_catalogs"`
	// SeedOverwrite makes the file's policies and resources replace those in KV at start
	// (gatehouse dev); otherwise KV, once seeded, is the source of truth. Not in YAML.
	SeedOverwrite bool `yaml:"-"`
}

// PolicyTest is one expected decision.
type PolicyTest struct {
	Name     string   `yaml:"name"`
	As       string   `yaml:"as"`      // the token subject
	AsName   string   `yaml:"as_name"` // identity.name (default: the subject, as for a token without name claims)
	Groups   []string `yaml:"groups"`
	Grants   []string `yaml:"grants"` // roles the caller holds grants for
	Resource string   `yaml:"resource"`
	SQL      string   `yaml:"sql"`
	Expect   string   `yaml:"expect"` // allow, mask, require_approval or deny
	Rule     string   `yaml:"rule"`   // optional: the rule that must decide
}

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Server is the HTTP server every process runs (API, health, metrics, dev issuer).
type Server struct {
	HTTPListen string `yaml:"http_listen"`
	// Pprof serves Go profiling under /debug/pprof (off by default: it exposes internals).
	Pprof bool `yaml:"pprof"`
}

// NATS says where the bus is. An empty URL means: run NATS embedded in this process.
type NATS struct {
	URL string `yaml:"url"`
	// EmbeddedListen is the client address of the embedded server (port 0 = any free port).
	EmbeddedListen string `yaml:"embedded_listen"`
	// StreamMaxBytes bounds GH_AUDIT (limits-based retention).
	StreamMaxBytes int64 `yaml:"stream_max_bytes"`
	// DuplicateWindow is JetStream's deduplication window for re-published events (default
	// 2m, NATS's own). The server keeps every message ID of the window in memory, so its
	// size is the publish rate times the window; a copy stored after it is harmless (the
	// audit store keeps one event per ID).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
}

// Identity lists the token issuers the gateway trusts.
type Identity struct {
	Issuers []Issuer `yaml:"issuers"`
	// DevIssuer serves a development-only OIDC issuer on the HTTP server. Never in production.
	DevIssuer bool `yaml:"dev_issuer"`
	// DevIssuerURL is the issuer URL the development issuer announces, when the HTTP listen
	// address is not how others reach it (containers). Default http://<http_listen>/dev/oidc.
	DevIssuerURL string `yaml:"dev_issuer_url"`
}

// Issuer is one trusted OIDC issuer (docs/identity.md).
type Issuer struct {
	// Issuer is the issuer URL, exactly as the tokens' iss claim and the discovery document
	// say it (a trailing slash is ignored when tokens are matched to issuers).
	Issuer string `yaml:"issuer"`
	// Audience is the one audience a token must carry; Audiences lists several, any one of
	// which will do. Set one of the two.
	Audience  string   `yaml:"audience"`
	Audiences []string `yaml:"audiences"`
	// GroupsClaim names the claim holding the caller's groups (default groups).
	GroupsClaim string `yaml:"groups_claim"`
	// KindClaim names a claim saying "service" or "human"; empty means service when the
	// token has no email, human otherwise.
	KindClaim string `yaml:"kind_claim"`
	// NameClaim is the claim, or the list of claims tried in order, whose string value is
	// the caller's readable name (identity.name), shown next to the token subject in
	// sessions, events and revocations. Default: DefaultNameClaims, then for service tokens
	// DefaultServiceNameClaims; the subject when none is present.
	NameClaim ClaimNames `yaml:"name_claim"`
}

// DefaultNameClaims name a person: tried in order when an issuer sets no name_claim.
var DefaultNameClaims = []string{"email", "preferred_username", "upn"}

// DefaultServiceNameClaims name the client a service token was issued to (OAuth
// client_id, OIDC azp, Okta cid, Entra ID v1 appid), tried after DefaultNameClaims for
// tokens of kind service only: a person's token names the person, never the app it came
// through.
var DefaultServiceNameClaims = []string{"client_id", "azp", "cid", "appid"}

// AcceptedAudiences is the audiences a token of this issuer may carry (one is enough).
func (is *Issuer) AcceptedAudiences() []string {
	if len(is.Audiences) > 0 {
		return is.Audiences
	}
	if is.Audience != "" {
		return []string{is.Audience}
	}
	return nil
}

// ClaimNames is one claim name or a list of them, in YAML a string or a sequence of
// strings. Any other YAML value is kept as a problem that Validate reports with the field
// path.
type ClaimNames struct {
	Names []string
	// set records that the key was present, problem what was wrong with its value.
	set     bool
	problem string
}

// Claims returns the claim names.
func Claims(names ...string) ClaimNames { return ClaimNames{Names: names, set: true} }

// UnmarshalYAML takes a string or a sequence of strings.
func (c *ClaimNames) UnmarshalYAML(n *yaml.Node) error {
	*c = ClaimNames{set: true}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			c.problem = fmt.Sprintf("%s is not a claim name (a string, or a list of strings)", yamlKind(n))
			return nil
		}
		c.Names = []string{n.Value}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.Tag != "!!str" {
				c.problem = fmt.Sprintf("item %d: %s is not a claim name (a string)", i, yamlKind(e))
				return nil
			}
			c.Names = append(c.Names, e.Value)
		}
	default:
		c.problem = fmt.Sprintf("%s is not a claim name (a string, or a list of strings)", yamlKind(n))
	}
	return nil
}

// MarshalYAML writes the names as a list.
func (c ClaimNames) MarshalYAML() (any, error) { return c.Names, nil }

func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return fmt.Sprintf("the number %s", n.Value)
	case "!!bool":
		return fmt.Sprintf("the boolean %s", n.Value)
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%s value %q", n.Tag, n.Value)
}

// Proxy configures the protocol proxies.
type Proxy struct {
	Postgres PostgresProxy `yaml:"postgres"`
	// MaskKeyFile holds the secret (at least 32 bytes) that keys the HMAC tokens of the hmac
	// mask method. Without it, hmac masking redacts instead.
	MaskKeyFile string `yaml:"mask_key_file"`
}

// LoadMaskKey reads the mask key file (nil when none is configured).
func (p *Proxy) LoadMaskKey() ([]byte, error) {
	if p.MaskKeyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p.MaskKeyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy.mask_key_file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < 32 {
		return nil, fmt.Errorf("proxy.mask_key_file: %d bytes; at least 32 are needed", len(b))
	}
	return b, nil
}

// PostgresProxy configures the PostgreSQL proxy listener.
type PostgresProxy struct {
	Listen          string        `yaml:"listen"`
	MaxMessageBytes int           `yaml:"max_message_bytes"`
	StartupTimeout  time.Duration `yaml:"startup_timeout"`
	DecisionTimeout time.Duration `yaml:"decision_timeout"`
	// DecisionCacheTTL bounds how long a cached decision is used (it is also dropped as soon
	// as the policy revision changes). DecisionCacheSize bounds the entries.
	DecisionCacheTTL  time.Duration `yaml:"decision_cache_ttl"`
	DecisionCacheSize int           `yaml:"decision_cache_size"`
	// CatalogRefresh is how often the proxy reads each resource's catalog again (besides
	// after a session's schema change is committed); default 1m.
	CatalogRefresh time.Duration `yaml:"catalog_refresh"`
	// TLSCertFile and TLSKeyFile enable TLS for clients (SSLRequest).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// AllowPlaintextTokens lets non-loopback clients send tokens without TLS. Never in production.
	AllowPlaintextTokens bool `yaml:"allow_plaintext_tokens"`
}

// Audit bounds what the proxies record.
type Audit struct {
	// Mode is the default durability: strict or buffered (resources may override).
	Mode string `yaml:"mode"`
	// SpoolEvents bounds the messages waiting for JetStream (one message carries one or more
	// events); when full, new statements are refused.
	SpoolEvents int `yaml:"spool_events"`
	// SpoolBytes bounds the bytes of those messages in the same way. Default 256 MiB.
	SpoolBytes int `yaml:"spool_bytes"`
	// SpoolWait is how long a statement may wait for room in a full spool before it is
	// refused (backpressure for bursts such as huge pipelines).
	SpoolWait time.Duration `yaml:"spool_wait"`
	// SigningKeyFile holds the gateway's Ed25519 key (base64 of its 32-byte seed): every
	// session's chain is sealed with it at the session's end. VerifyKeys are further public
	// keys (base64) whose seals gatehouse audit verify accepts (keys rotated out).
	SigningKeyFile string   `yaml:"signing_key_file"`
	VerifyKeys     []string `yaml:"verify_keys"`
	// Linger is how long a buffered session's events may wait to share one JetStream message
	// with the events of its next statements (JetStream's cost is per message). Strict
	// resources never linger. Default 5ms.
	Linger time.Duration `yaml:"linger"`
	// ResultChunkBytes bounds one db.result.chunk event.
	ResultChunkBytes int `yaml:"result_chunk_bytes"`
	// MaxResultBytes bounds the rows recorded per statement; later rows are counted only.
	MaxResultBytes int `yaml:"max_result_bytes"`
	// MaxSQLBytes bounds the statement text recorded in db.query.
	MaxSQLBytes int `yaml:"max_sql_bytes"`
	// Retention drops old months of the audit trail in ClickHouse.
	Retention Retention `yaml:"retention"`
	// GatewayTimeout is how long a proxy process may go without refreshing its key in
	// gh_gateways before its open sessions count as cut (it refreshes every quarter of
	// it). Default 30s.
	GatewayTimeout time.Duration `yaml:"gateway_timeout"`
	// SweepInterval is how often ingest ends the sessions of gateways that are gone
	// (session.end gateway_lost, sealed). Default 10s; negative: this process does not
	// sweep (another ingest copy does).
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// Retention says how long ClickHouse keeps the audit trail, per resource label. The trail
// is partitioned by resource and month; the ingest service drops a partition once its
// newest event is older than the period of the first rule matching the resource's labels
// (default for resources no rule matches, removed resources, and _config's control
// events). Each run that drops something is recorded as an audit.retention event.
type Retention struct {
	// Default is the period for what no rule matches; 0 keeps it for ever.
	Default time.Duration   `yaml:"default"`
	Rules   []RetentionRule `yaml:"rules"`
	// Interval between runs (default 1h).
	Interval time.Duration `yaml:"interval"`
}

// RetentionRule keeps the events of resources carrying all of Labels for Keep.
type RetentionRule struct {
	Labels map[string]string `yaml:"labels"`
	Keep   time.Duration     `yaml:"keep"`
}

// Enabled says whether anything is ever dropped.
func (r Retention) Enabled() bool { return r.Default > 0 || len(r.Rules) > 0 }

// MinRetention is the shortest period accepted: a mistyped "1h" must not empty the trail.
const MinRetention = 24 * time.Hour

// ClickHouse is the audit store.
type ClickHouse struct {
	Address  string `yaml:"address"`
	Database string `yaml:"database"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Ingest configures JetStream → ClickHouse batching.
type Ingest struct {
	// BatchSize is the JetStream messages fetched per ClickHouse insert (a message holds one
	// or many events). Default 500.
	BatchSize     int           `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// Query configures the HTTP API over ClickHouse.
type Query struct {
	// AuditorGroups may use the audit API.
	AuditorGroups []string `yaml:"auditor_groups"`
	// AdminGroups may change policies and resources through the API (default
	// gatehouse-admins).
	AdminGroups []string `yaml:"admin_groups"`
}

// Resource is one backend the gateway fronts.
type Resource struct {
	Name   string            `yaml:"name"`
	Type   string            `yaml:"type"`
	Labels map[string]string `yaml:"labels"`
	Audit  string            `yaml:"audit"`
	// RequireTLS refuses clients that do not use TLS, loopback ones included.
	RequireTLS bool `yaml:"require_tls"`
	// TokenExpiry is what happens to an open session when the caller's token expires: end
	// (the default, as zero trust asks; pooled drivers reconnect with a fresh token) or
	// continue, up to MaxSessionLifetime (default 12h).
	TokenExpiry        string           `yaml:"token_expiry,omitempty"`
	MaxSessionLifetime time.Duration    `yaml:"max_session_lifetime,omitempty"`
	Postgres           *PostgresBackend `yaml:"postgres"`
}

// PostgresBackend is how the proxy reaches a PostgreSQL resource. The credential stays here.
type PostgresBackend struct {
	Address      string `yaml:"address"`
	Database     string `yaml:"database"`
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	SSLMode      string `yaml:"sslmode"`
	// TrustedFunctions are functions that are not built in which the resource's owner
	// vouches for ("schema.name"): they change nothing, read no table, and change no
	// setting. Statements calling them are then analysed as if they were built-in
	// expressions (their results computed from their arguments); any other function that
	// is not built in is code the gateway cannot see into.
	TrustedFunctions []string `yaml:"trusted_functions"`
}

// Policy is a named group of CEL rules for some resources.
type Policy struct {
	Name string `yaml:"name"`
	// Shadow evaluates the policy and records what it would decide ("would deny") without
	// enforcing it, to try a new policy on live traffic.
	Shadow    bool     `yaml:"shadow"`
	Resources []string `yaml:"resources"`
	Rules     []Rule   `yaml:"rules"`
}

// Mask says what a rule with effect mask hides in results.
type Mask struct {
	// Columns are source columns, "table.column" (schema public) or "schema.table.column",
	// recognised by the table OID and attribute number PostgreSQL reports for each result
	// column, so that aliases do not escape.
	Columns []string `yaml:"columns"`
	// Detectors find sensitive values in any text value: card (Luhn-valid card numbers),
	// email, ssn (US), iban (checksum-valid), phone.
	Detectors []string `yaml:"detectors"`
	// Regex are custom detectors (RE2 syntax).
	Regex []string `yaml:"regex"`
	// Method is redact (default), partial (keep the last 4 characters) or hmac
	// (deterministic keyed token: equal values give equal tokens).
	Method string `yaml:"method"`
	// Probing is refuse (default) or allow: whether a statement may use a masked column
	// other than as a result column (to filter, sort, group, join, compare with DISTINCT or
	// a set operation, pass to a function with effects, or write elsewhere), which would
	// reveal its values row by row.
	Probing string `yaml:"probing"`
	// Derived is mask (default) or refuse: whether a statement may return values computed
	// from a masked column (masked whole), or only the column itself.
	Derived string `yaml:"derived"`
}

// MaskDetectors are the built-in content detectors.
var MaskDetectors = []string{"card", "email", "ssn", "iban", "phone"}

// MaskMethods are the ways a value can be masked.
var MaskMethods = []string{"redact", "partial", "hmac"}

// Rule is one CEL condition with its effect.
type Rule struct {
	Name   string `yaml:"name"`
	Effect string `yaml:"effect"` // allow, mask, require_approval or deny
	When   string `yaml:"when"`
	Reason string `yaml:"reason"`
	Mask   *Mask  `yaml:"mask,omitempty"` // effect mask: what to hide
	// Approval, with effect require_approval, says who approves and how; without it the
	// statement is refused with "approval required".
	Approval *Approval `yaml:"approval,omitempty"`
}

// maxEventPart bounds what one audit event may carry of a result or a statement.
const maxEventPart = 256 << 10

// Sink is one SIEM destination, with its own durable position in GH_AUDIT: type http posts
// NDJSON batches (a generic webhook or Splunk HEC's raw endpoint); type syslog sends RFC
// 5424 messages over TCP, with TLS (RFC 5425) when tls is set.
type Sink struct {
	Name      string        `yaml:"name"`
	Type      string        `yaml:"type"`       // http or syslog
	BatchSize int           `yaml:"batch_size"` // messages per delivery (default 500)
	Flush     time.Duration `yaml:"flush"`      // longest wait for a full batch (default 1s)
	// http
	URL       string `yaml:"url"`
	TokenFile string `yaml:"token_file"` // its content is sent as the Authorization header
	// syslog
	Address  string `yaml:"address"`  // host:port
	Facility string `yaml:"facility"` // default audit (13)
	Hostname string `yaml:"hostname"` // default this host's name
	// MaxMessageBytes bounds one syslog message (default 65536); a bigger event is sent as a
	// stub naming it.
	MaxMessageBytes int      `yaml:"max_message_bytes"`
	TLS             *SinkTLS `yaml:"tls"`
}

// SyslogFacilities are the syslog facility names a sink may use (RFC 5424, 6.2.1).
var SyslogFacilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8, "cron": 9,
	"authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// SinkTLS is the TLS client side of a sink: the server is verified against CAFile (default:
// the system's roots) and ServerName (default: the address's host); CertFile and KeyFile
// authenticate the gateway when the receiver asks (mutual TLS).
type SinkTLS struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
}

// Slack configures the approvals notifier.
type Slack struct {
	BotTokenFile      string `yaml:"bot_token_file"`      // xoxb-... token
	SigningSecretFile string `yaml:"signing_secret_file"` // verifies interaction callbacks
	APIURL            string `yaml:"api_url"`             // default https://slack.com/api/ (tests point it elsewhere)
	Channel           string `yaml:"channel"`             // default channel for approvals
	// Channels overrides the channel per resource name.
	Channels map[string]string `yaml:"channels"`
	// Users maps Slack users (by the email Slack reports for them) to identities: who may
	// approve is decided by these groups, as for the CLI.
	Users []SlackUser `yaml:"users"`
	// Owners maps requesters (token subjects or names, e.g. a service) to the Slack user
	// ID of the person who owns them, told when a request of theirs is decided, expires or
	// is withdrawn.
	Owners map[string]string `yaml:"owners"`
}

// SlackUser is a Slack user's identity for approvals.
type SlackUser struct {
	Email   string   `yaml:"email"`
	Subject string   `yaml:"subject"`
	Groups  []string `yaml:"groups"`
}

// GrantRole is a role that can be granted for a while (gatehouse grants request).
type GrantRole struct {
	Role      string   `yaml:"role"`
	Resources []string `yaml:"resources"` // resource names, or "*"
	Approvers []string `yaml:"approvers"`
	Required  int      `yaml:"required"` // distinct approvals (default 1)
	// MaxDuration bounds what may be asked for (default 8h); Timeout is how long the
	// request waits for approvers (default 1h).
	MaxDuration time.Duration `yaml:"max_duration"`
	Timeout     time.Duration `yaml:"timeout"`
	// OnExpiry: end_sessions (default: sessions that used the grant end) or next_statement
	// (they lose the rights on their next statement).
	OnExpiry string `yaml:"on_expiry"`
}

// Approval is how a require_approval rule is approved.
type Approval struct {
	Approvers []string      `yaml:"approvers"`          // groups whose members may approve
	Required  int           `yaml:"required,omitempty"` // distinct approvals needed (default 1)
	Timeout   time.Duration `yaml:"timeout,omitempty"`  // how long the request stays open (default 5m)
	// Mode is hold (default: the client waits, the statement runs once approved) or
	// fail_fast (the client gets the approval id at once; the identical statement from the
	// same identity may run once within Window after approval).
	Mode   string        `yaml:"mode,omitempty"`
	Window time.Duration `yaml:"window,omitempty"` // fail_fast (default 1h)
}

// Load reads, expands, decodes, defaults and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a config document (after environment expansion) and applies defaults. It
// does not validate: callers may fill in fields (as `gatehouse dev` does) first.
func Parse(b []byte) (*Config, error) {
	expanded, err := Expand(string(b), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	c.ApplyDefaults()
	return &c, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// Expand replaces ${VAR} and ${VAR:-default}. An unset variable without a default is an
// error naming it, so a missing secret is not silently read as empty.
func Expand(s string, lookup func(string) (string, bool)) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		g := envRef.FindStringSubmatch(m)
		if v, ok := lookup(g[1]); ok && (v != "" || g[2] == "") {
			return v
		}
		if g[2] != "" {
			return g[3]
		}
		missing = append(missing, g[1])
		return ""
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set (use ${%s:-default} for an optional value)", strings.Join(missing, ", "), missing[0])
	}
	return out, nil
}

// ApplyDefaults fills unset fields.
func (c *Config) ApplyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DataDir, ".gatehouse")
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "text")
	def(&c.Server.HTTPListen, "127.0.0.1:8080")
	def(&c.NATS.EmbeddedListen, "127.0.0.1:0")
	if c.NATS.StreamMaxBytes == 0 {
		c.NATS.StreamMaxBytes = 8 << 30
	}
	defDur(&c.NATS.DuplicateWindow, 2*time.Minute)
	for i := range c.Identity.Issuers {
		def(&c.Identity.Issuers[i].GroupsClaim, "groups")
	}
	def(&c.Proxy.Postgres.Listen, "127.0.0.1:6432")
	defInt(&c.Proxy.Postgres.MaxMessageBytes, 16<<20)
	defDur(&c.Proxy.Postgres.StartupTimeout, 10*time.Second)
	defDur(&c.Proxy.Postgres.DecisionTimeout, 2*time.Second)
	defDur(&c.Proxy.Postgres.DecisionCacheTTL, 30*time.Second)
	defDur(&c.Proxy.Postgres.CatalogRefresh, time.Minute)
	defDur(&c.Audit.GatewayTimeout, 30*time.Second)
	defDur(&c.Audit.SweepInterval, 10*time.Second)
	defInt(&c.Proxy.Postgres.DecisionCacheSize, 100000)
	def(&c.Audit.Mode, "buffered")
	defInt(&c.Audit.SpoolEvents, 100000)
	defInt(&c.Audit.SpoolBytes, 256<<20)
	defDur(&c.Audit.SpoolWait, 5*time.Second)
	defDur(&c.Audit.Linger, 5*time.Millisecond)
	defInt(&c.Audit.ResultChunkBytes, 64<<10)
	defInt(&c.Audit.MaxResultBytes, 1<<20)
	defInt(&c.Audit.MaxSQLBytes, 64<<10)
	defDur(&c.Audit.Retention.Interval, time.Hour)
	for i := range c.Grants {
		g := &c.Grants[i]
		defDur(&g.MaxDuration, 8*time.Hour)
		defDur(&g.Timeout, time.Hour)
		def(&g.OnExpiry, "end_sessions")
		if g.Required == 0 {
			g.Required = 1
		}
	}
	def(&c.ClickHouse.Database, "gatehouse")
	def(&c.ClickHouse.Username, "default")
	defInt(&c.Ingest.BatchSize, 500)
	defDur(&c.Ingest.FlushInterval, 200*time.Millisecond)
	if len(c.Query.AdminGroups) == 0 {
		c.Query.AdminGroups = []string{"gatehouse-admins"}
	}
	if len(c.Query.AuditorGroups) == 0 {
		c.Query.AuditorGroups = []string{"auditors"}
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		def(&r.Audit, c.Audit.Mode)
		if r.Postgres != nil {
			def(&r.Postgres.SSLMode, "prefer")
		}
	}
}

// Errors collects validation problems, each with its field path.
type Errors []string

func (e Errors) Error() string {
	return "invalid config:\n  " + strings.Join(e, "\n  ")
}

type checker struct{ errs Errors }

func (c *checker) add(path, format string, args ...any) {
	c.errs = append(c.errs, path+": "+fmt.Sprintf(format, args...))
}

func (c *checker) required(path, v string) {
	if v == "" {
		c.add(path, "required")
	}
}

func (c *checker) hostPort(path, v string) {
	if v == "" {
		c.add(path, "required (host:port)")
		return
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		c.add(path, "%q is not host:port: %v", v, err)
	}
}

func (c *checker) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.add(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// Validate checks the whole config and returns every problem with its field path.
func (c *Config) Validate() error {
	var ck checker
	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "text", "json")
	ck.hostPort("server.http_listen", c.Server.HTTPListen)
	if c.NATS.URL == "" {
		ck.hostPort("nats.embedded_listen", c.NATS.EmbeddedListen)
	} else if !strings.Contains(c.NATS.URL, "://") {
		ck.add("nats.url", "%q is not a URL (nats://host:port)", c.NATS.URL)
	}
	ck.identity(&c.Identity)
	ck.hostPort("proxy.postgres.listen", c.Proxy.Postgres.Listen)
	if c.Proxy.Postgres.MaxMessageBytes < 1024 {
		ck.add("proxy.postgres.max_message_bytes", "%d is below the 1024-byte minimum", c.Proxy.Postgres.MaxMessageBytes)
	}
	if (c.Proxy.Postgres.TLSCertFile == "") != (c.Proxy.Postgres.TLSKeyFile == "") {
		ck.add("proxy.postgres.tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	ck.oneOf("audit.mode", c.Audit.Mode, "strict", "buffered")
	if c.Audit.ResultChunkBytes < 1024 {
		ck.add("audit.result_chunk_bytes", "%d is below the 1024-byte minimum", c.Audit.ResultChunkBytes)
	}
	// An event has to fit in one NATS message (max_payload is 1 MiB unless configured).
	if c.Audit.ResultChunkBytes > maxEventPart {
		ck.add("audit.result_chunk_bytes", "%d is above the %d-byte maximum (an event must fit in a NATS message)", c.Audit.ResultChunkBytes, maxEventPart)
	}
	if c.Audit.MaxSQLBytes > maxEventPart {
		ck.add("audit.max_sql_bytes", "%d is above the %d-byte maximum (an event must fit in a NATS message)", c.Audit.MaxSQLBytes, maxEventPart)
	}
	if c.Audit.SpoolBytes < 1<<20 {
		ck.add("audit.spool_bytes", "%d is below the 1 MiB minimum", c.Audit.SpoolBytes)
	}
	if d := c.Audit.Retention.Default; d != 0 && d < MinRetention {
		ck.add("audit.retention.default", "%s is below the %s minimum (0 keeps for ever)", d, MinRetention)
	}
	for i, r := range c.Audit.Retention.Rules {
		p := fmt.Sprintf("audit.retention.rules[%d]", i)
		if len(r.Labels) == 0 {
			ck.add(p+".labels", "required (the labels a resource must carry, e.g. env: production)")
		}
		if r.Keep < MinRetention {
			ck.add(p+".keep", "%s is below the %s minimum", r.Keep, MinRetention)
		}
	}
	if c.Audit.Retention.Interval < time.Minute {
		ck.add("audit.retention.interval", "%s is below the 1m minimum", c.Audit.Retention.Interval)
	}
	if c.Audit.Linger < 0 || c.Audit.Linger > time.Second {
		ck.add("audit.linger", "%s is out of range (0 to 1s)", c.Audit.Linger)
	}
	if c.Ingest.BatchSize < 1 || c.Ingest.BatchSize > 1000000 {
		ck.add("ingest.batch_size", "%d is outside 1..1000000", c.Ingest.BatchSize)
	}
	names := map[string]bool{}
	for i, r := range c.Resources {
		p := fmt.Sprintf("resources[%d]", i)
		if r.Name == "" {
			ck.add(p+".name", "required")
		} else if !validName(r.Name) {
			ck.add(p+".name", "%q may hold only letters, digits, '-' and '_'", r.Name)
		} else if names[r.Name] {
			ck.add(p+".name", "duplicate resource %q", r.Name)
		}
		names[r.Name] = true
		ck.oneOf(p+".type", r.Type, "postgres")
		ck.oneOf(p+".audit", r.Audit, "strict", "buffered")
		if r.TokenExpiry != "" {
			ck.oneOf(p+".token_expiry", r.TokenExpiry, "end", "continue")
		}
		if r.MaxSessionLifetime < 0 {
			ck.add(p+".max_session_lifetime", "%s is negative", r.MaxSessionLifetime)
		}
		if r.Type == "postgres" {
			if r.Postgres == nil {
				ck.add(p+".postgres", "required for type postgres")
				continue
			}
			ck.hostPort(p+".postgres.address", r.Postgres.Address)
			ck.required(p+".postgres.database", r.Postgres.Database)
			ck.required(p+".postgres.user", r.Postgres.User)
			if r.Postgres.Password != "" && r.Postgres.PasswordFile != "" {
				ck.add(p+".postgres.password", "password and password_file are mutually exclusive")
			}
			ck.oneOf(p+".postgres.sslmode", r.Postgres.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
			for j, f := range r.Postgres.TrustedFunctions {
				if parts := strings.Split(f, "."); len(parts) != 2 || parts[0] == "" || parts[1] == "" {
					ck.add(fmt.Sprintf("%s.postgres.trusted_functions[%d]", p, j), "%q is not schema.name", f)
				}
			}
		}
	}
	pnames := map[string]bool{}
	for i, pol := range c.Policies {
		p := fmt.Sprintf("policies[%d]", i)
		ck.required(p+".name", pol.Name)
		if pnames[pol.Name] {
			ck.add(p+".name", "duplicate policy %q", pol.Name)
		}
		pnames[pol.Name] = true
		if len(pol.Resources) == 0 {
			ck.add(p+".resources", "required (resource names, or \"*\")")
		}
		for j, rn := range pol.Resources {
			if rn != "*" && !names[rn] {
				ck.add(fmt.Sprintf("%s.resources[%d]", p, j), "unknown resource %q", rn)
			}
		}
		for j, r := range pol.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", p, j)
			ck.required(rp+".name", r.Name)
			ck.oneOf(rp+".effect", r.Effect, "allow", "mask", "require_approval", "deny")
			ck.required(rp+".when", r.When)
			ck.mask(rp, &r)
			ck.approval(rp, &r)
		}
	}
	if sl := c.Slack; sl != nil {
		ck.required("slack.bot_token_file", sl.BotTokenFile)
		ck.required("slack.signing_secret_file", sl.SigningSecretFile)
		ck.required("slack.channel", sl.Channel)
		for i, u := range sl.Users {
			if u.Email == "" || u.Subject == "" {
				ck.add(fmt.Sprintf("slack.users[%d]", i), "email and subject are required")
			}
		}
	}
	sinkNames := map[string]bool{}
	for i, sk := range c.Sinks {
		p := fmt.Sprintf("sinks[%d]", i)
		if !validName(sk.Name) || sk.Name == "" {
			ck.add(p+".name", "%q: letters, digits, '-' and '_' only", sk.Name)
		} else if sinkNames[sk.Name] {
			ck.add(p+".name", "duplicate sink %q", sk.Name)
		}
		sinkNames[sk.Name] = true
		ck.oneOf(p+".type", sk.Type, "http", "syslog")
		switch sk.Type {
		case "http":
			if !strings.HasPrefix(sk.URL, "https://") && !strings.HasPrefix(sk.URL, "http://") {
				ck.add(p+".url", "%q is not an http(s) URL", sk.URL)
			}
		case "syslog":
			if _, port, err := net.SplitHostPort(sk.Address); err != nil || port == "" {
				ck.add(p+".address", "%q is not host:port", sk.Address)
			}
			if _, ok := SyslogFacilities[sk.Facility]; sk.Facility != "" && !ok {
				ck.add(p+".facility", "%q is not a syslog facility (kern, user, ..., authpriv, audit, local0..local7)", sk.Facility)
			}
			if sk.MaxMessageBytes != 0 && sk.MaxMessageBytes < 480 {
				ck.add(p+".max_message_bytes", "%d is below the 480-byte minimum of RFC 5424", sk.MaxMessageBytes)
			}
			if t := sk.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
				ck.add(p+".tls", "cert_file and key_file go together")
			}
		}
	}
	roles := map[string]bool{}
	for i, g := range c.Grants {
		p := fmt.Sprintf("grants[%d]", i)
		ck.required(p+".role", g.Role)
		if roles[g.Role] {
			ck.add(p+".role", "duplicate role %q", g.Role)
		}
		roles[g.Role] = true
		if len(g.Approvers) == 0 {
			ck.add(p+".approvers", "required (groups whose members may approve)")
		}
		for j, rn := range g.Resources {
			if rn != "*" && !names[rn] {
				ck.add(fmt.Sprintf("%s.resources[%d]", p, j), "unknown resource %q", rn)
			}
		}
		if g.OnExpiry != "" {
			ck.oneOf(p+".on_expiry", g.OnExpiry, "end_sessions", "next_statement")
		}
		if g.MaxDuration < 0 || g.Timeout < 0 || g.Required < 0 {
			ck.add(p, "max_duration, timeout and required cannot be negative")
		}
	}
	for i, tc := range c.Tests {
		p := fmt.Sprintf("tests[%d]", i)
		ck.required(p+".name", tc.Name)
		ck.required(p+".as", tc.As)
		ck.required(p+".sql", tc.SQL)
		ck.oneOf(p+".expect", tc.Expect, "allow", "mask", "require_approval", "deny")
		if !names[tc.Resource] {
			ck.add(p+".resource", "unknown resource %q", tc.Resource)
		}
	}
	if len(ck.errs) > 0 {
		return ck.errs
	}
	return nil
}

// identity checks the trusted issuers: each once, with its audiences and claims.
func (ck *checker) identity(id *Identity) {
	seen := map[string]int{}
	for i, is := range id.Issuers {
		p := fmt.Sprintf("identity.issuers[%d]", i)
		if !strings.HasPrefix(is.Issuer, "https://") && !strings.HasPrefix(is.Issuer, "http://") {
			ck.add(p+".issuer", "%q must be an http(s) URL", is.Issuer)
		} else {
			// Tokens are matched to issuers by iss without a trailing slash: two entries that
			// differ only by one would be one issuer, and one of them silently ignored.
			key := strings.TrimRight(is.Issuer, "/")
			if j, dup := seen[key]; dup {
				ck.add(p+".issuer", "%q is already identity.issuers[%d]: list an issuer once, with all its audiences under audiences", is.Issuer, j)
			} else {
				seen[key] = i
			}
		}
		switch {
		case is.Audience != "" && is.Audiences != nil:
			ck.add(p+".audiences", "audience and audiences are exclusive: put %q in audiences", is.Audience)
		case is.Audiences != nil && len(is.Audiences) == 0:
			ck.add(p+".audiences", "empty: list at least one audience a token must carry (e.g. the gateway's client ID at the IdP)")
		case is.Audiences == nil && is.Audience == "":
			ck.add(p+".audience", "required (audience: X, or audiences: [X, Y]): the aud a token must carry to be accepted")
		}
		auds := map[string]bool{}
		for j, a := range is.Audiences {
			ap := fmt.Sprintf("%s.audiences[%d]", p, j)
			if strings.TrimSpace(a) == "" {
				ck.add(ap, "empty audience")
			} else if auds[a] {
				ck.add(ap, "duplicate audience %q", a)
			}
			auds[a] = true
		}
		ck.claimName(p+".groups_claim", is.GroupsClaim)
		if is.KindClaim != "" {
			ck.claimName(p+".kind_claim", is.KindClaim)
		}
		nc := is.NameClaim
		switch {
		case nc.problem != "":
			ck.add(p+".name_claim", "%s", nc.problem)
		case nc.set && len(nc.Names) == 0:
			ck.add(p+".name_claim", "empty: name a claim (e.g. email), or leave name_claim out for the default (%s)", strings.Join(DefaultNameClaims, ", "))
		}
		for j, n := range nc.Names {
			np := p + ".name_claim"
			if len(nc.Names) > 1 {
				np = fmt.Sprintf("%s[%d]", np, j)
			}
			ck.claimName(np, n)
		}
	}
	if id.DevIssuer && id.DevIssuerURL != "" {
		if j, dup := seen[strings.TrimRight(id.DevIssuerURL, "/")]; dup {
			ck.add("identity.dev_issuer_url", "%q is also identity.issuers[%d]: with dev_issuer: true the development issuer is trusted by itself; remove one", id.DevIssuerURL, j)
		}
	}
}

// claimName checks a token claim's name: not empty, no spaces or control characters.
func (ck *checker) claimName(path, v string) {
	if v == "" {
		ck.add(path, "empty claim name")
		return
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f {
			ck.add(path, "%q is not a claim name (no spaces or control characters)", v)
			return
		}
	}
}

// approval checks a rule's approval block.
func (ck *checker) approval(rp string, r *Rule) {
	a := r.Approval
	if a == nil {
		return
	}
	if r.Effect != "require_approval" {
		ck.add(rp+".approval", "only rules with effect require_approval take an approval")
		return
	}
	if len(a.Approvers) == 0 {
		ck.add(rp+".approval.approvers", "required (groups whose members may approve)")
	}
	if a.Required < 0 || a.Required > 10 {
		ck.add(rp+".approval.required", "%d is outside 1..10", a.Required)
	}
	if a.Timeout < 0 || a.Timeout > 24*time.Hour {
		ck.add(rp+".approval.timeout", "%s is outside 0..24h", a.Timeout)
	}
	if a.Mode != "" && a.Mode != "hold" && a.Mode != "fail_fast" {
		ck.add(rp+".approval.mode", "%q is not hold or fail_fast", a.Mode)
	}
	if a.Window < 0 || a.Window > 7*24*time.Hour {
		ck.add(rp+".approval.window", "%s is outside 0..168h", a.Window)
	}
}

// mask checks a rule's mask block: present exactly when the effect is mask.
func (ck *checker) mask(rp string, r *Rule) {
	if r.Effect != "mask" {
		if r.Mask != nil {
			ck.add(rp+".mask", "only rules with effect mask take a mask")
		}
		return
	}
	m := r.Mask
	if m == nil || len(m.Columns)+len(m.Detectors)+len(m.Regex) == 0 {
		ck.add(rp+".mask", "effect mask needs mask.columns, mask.detectors or mask.regex")
		return
	}
	for i, c := range m.Columns {
		parts := strings.Split(c, ".")
		if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
			ck.add(fmt.Sprintf("%s.mask.columns[%d]", rp, i), "%q is not table.column or schema.table.column", c)
		}
	}
	for i, d := range m.Detectors {
		if !slices.Contains(MaskDetectors, d) {
			ck.add(fmt.Sprintf("%s.mask.detectors[%d]", rp, i), "unknown detector %q (one of %s)", d, strings.Join(MaskDetectors, ", "))
		}
	}
	for i, re := range m.Regex {
		if _, err := regexp.Compile(re); err != nil {
			ck.add(fmt.Sprintf("%s.mask.regex[%d]", rp, i), "%v", err)
		}
	}
	if m.Method != "" && !slices.Contains(MaskMethods, m.Method) {
		ck.add(rp+".mask.method", "unknown method %q (one of %s)", m.Method, strings.Join(MaskMethods, ", "))
	}
	if m.Probing != "" && m.Probing != "refuse" && m.Probing != "allow" {
		ck.add(rp+".mask.probing", "%q: refuse (the default) or allow", m.Probing)
	}
	if m.Derived != "" && m.Derived != "mask" && m.Derived != "refuse" {
		ck.add(rp+".mask.derived", "%q: mask (the default) or refuse", m.Derived)
	}
}

func validName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// GrantRole returns the grant role named role.
func (c *Config) GrantRole(role string) (*GrantRole, bool) {
	for i := range c.Grants {
		if c.Grants[i].Role == role {
			return &c.Grants[i], true
		}
	}
	return nil, false
}

// Resource returns the resource with the given name.
func (c *Config) Resource(name string) (*Resource, bool) {
	for i := range c.Resources {
		if c.Resources[i].Name == name {
			return &c.Resources[i], true
		}
	}
	return nil, false
}

// Secret returns the backend password, reading password_file on every call so that a
// rotated file is picked up by the next backend connection without a restart.
func (p *PostgresBackend) Secret() (string, error) {
	if p.PasswordFile != "" {
		b, err := os.ReadFile(p.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("read password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return p.Password, nil
}
