package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

const valid = `
nats: {url: "nats://127.0.0.1:4222"}
identity:
  issuers: [{issuer: "https://idp.example.com", audience: gatehouse}]
clickhouse: {address: "127.0.0.1:9000"}
resources:
  - name: demo
    type: postgres
    postgres: {address: "127.0.0.1:5432", database: demo, user: app, password: "${DEMO_PW}"}
policies:
  - name: p
    resources: [demo]
    rules: [{name: r, effect: allow, when: "true"}]
`

func TestLoadValidWithDefaultsAndEnv(t *testing.T) {
	t.Setenv("DEMO_PW", "s3cret")
	c, err := config.Parse([]byte(valid))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "s3cret", c.Resources[0].Postgres.Password)
	require.Equal(t, "buffered", c.Resources[0].Audit)
	require.Equal(t, "prefer", c.Resources[0].Postgres.SSLMode)
	require.Equal(t, "127.0.0.1:6432", c.Proxy.Postgres.Listen)
	require.Equal(t, []string{"auditors"}, c.Query.AuditorGroups)
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "1", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{in: "x=${A}", want: "x=1"},
		{in: "x=${B:-def}", want: "x=def"},
		{in: "x=${EMPTY:-def}", want: "x=def"},
		{in: "x=${EMPTY}", want: "x="},
		{in: "x=${B}", err: "environment variable B is not set"},
		{in: "x=$A", want: "x=$A"},
	} {
		got, err := config.Expand(tc.in, lookup)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestUnknownFieldIsAnError(t *testing.T) {
	_, err := config.Parse([]byte("server: {http_lisen: x}\n"))
	require.ErrorContains(t, err, "http_lisen")
	require.ErrorContains(t, err, "line 1")
}

func TestValidationNamesFieldPaths(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	for _, tc := range []struct{ name, edit, want string }{
		{"bad log level", "log: {level: loud}", `log.level: "loud" is not one of`},
		{"resource without address", strings.Replace(valid, `address: "127.0.0.1:5432", `, "", 1), "resources[0].postgres.address: required"},
		{"bad resource type", strings.Replace(valid, "type: postgres", "type: mysql", 1), `resources[0].type: "mysql" is not one of postgres`},
		{"bad resource name", strings.Replace(valid, "name: demo", "name: de.mo", 1), `resources[0].name: "de.mo" may hold only`},
		{"policy on unknown resource", strings.Replace(valid, "resources: [demo]", "resources: [nope]", 1), `policies[0].resources[0]: unknown resource "nope"`},
		{"bad effect", strings.Replace(valid, "effect: allow", "effect: maybe", 1), `policies[0].rules[0].effect: "maybe" is not one of allow, mask, require_approval, deny`},
		{"bad nats url", strings.Replace(valid, "nats://127.0.0.1:4222", "127.0.0.1:4222", 1), `nats.url: "127.0.0.1:4222" is not a URL`},
		{"retention too short", "audit: {retention: {default: 1h}}", "audit.retention.default: 1h0m0s is below the 24h0m0s minimum"},
		{"result chunk too large", "audit: {result_chunk_bytes: 4194304}", "audit.result_chunk_bytes: 4194304 is above the 262144-byte maximum (an event must fit in a NATS message)"},
		{"statement text too large", "audit: {max_sql_bytes: 1048576}", "audit.max_sql_bytes: 1048576 is above the 262144-byte maximum"},
		{"retention rule without labels", "audit: {retention: {rules: [{keep: 8760h}]}}", "audit.retention.rules[0].labels: required"},
		{"retention rule too short", "audit: {retention: {rules: [{labels: {env: prod}, keep: 2h}]}}", "audit.retention.rules[0].keep: 2h0m0s is below"},
		{"syslog sink without port", "sinks: [{name: s, type: syslog, address: siem.example}]", `sinks[0].address: "siem.example" is not host:port`},
		{"syslog sink bad facility", "sinks: [{name: s, type: syslog, address: \"siem:6514\", facility: kernel}]", `sinks[0].facility: "kernel" is not a syslog facility`},
		{"syslog sink half a client cert", "sinks: [{name: s, type: syslog, address: \"siem:6514\", tls: {cert_file: c.pem}}]", "sinks[0].tls: cert_file and key_file go together"},
		{"policy name not a key", strings.Replace(valid, "  - name: p\n", "  - name: \"p q*\"\n", 1), `policies[0].name: "p q*" may hold only letters`},
		{"console over http off this machine", "console: {public_url: \"http://gatehouse.example.com\"}", `console.public_url: "http://gatehouse.example.com": a console off this machine needs https`},
		{"console saml without keys", "console: {saml: {idp_metadata_file: m.xml}}", "console.saml.certificate_file: required"},
		{"issuer not a URL", strings.Replace(valid, "https://idp.example.com", "idp", 1), `identity.issuers[0].issuer: "idp" must be an http(s) URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := valid
			if strings.Contains(tc.edit, "\n") {
				src = tc.edit
			} else {
				src += tc.edit + "\n"
			}
			c, err := config.Parse([]byte(src))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestPasswordFileIsReadOnEveryCall(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(f, []byte("one\n"), 0o600))
	p := &config.PostgresBackend{PasswordFile: f}
	s, err := p.Secret()
	require.NoError(t, err)
	require.Equal(t, "one", s)
	require.NoError(t, os.WriteFile(f, []byte("two"), 0o600))
	s, err = p.Secret()
	require.NoError(t, err)
	require.Equal(t, "two", s, "a rotated password file must be picked up")
}

func TestShippedConfigsAreValid(t *testing.T) {
	// deploy/gatehouse.dev.yaml leaves addresses empty for `gatehouse dev` to fill in.
	c, err := config.Load("../../deploy/gatehouse.dev.yaml")
	require.NoError(t, err)
	c.ClickHouse.Address = "127.0.0.1:9000"
	c.Resources[0].Postgres.Address = "127.0.0.1:5432"
	require.NoError(t, c.Validate())
}

// The decision settings every proxy shares live under proxy:; the PostgreSQL proxy's old
// keys still work, and setting both differently is an error naming both.
func TestProxyDecisionSettingsAreShared(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	load := func(extra string) (*config.Config, error) {
		c, err := config.Parse([]byte(valid + extra))
		require.NoError(t, err)
		return c, c.Validate()
	}
	c, err := load("")
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, c.Proxy.DecisionTimeout)
	require.Equal(t, 30*time.Second, c.Proxy.DecisionCacheTTL)
	require.Equal(t, 100000, c.Proxy.DecisionCacheSize)

	c, err = load("proxy: {decision_timeout: 5s, decision_cache_size: 10}\n")
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, c.Proxy.DecisionTimeout)
	require.Equal(t, 10, c.Proxy.DecisionCacheSize)

	c, err = load("proxy: {postgres: {decision_timeout: 4s, decision_cache_ttl: 1m}}\n")
	require.NoError(t, err)
	require.Equal(t, 4*time.Second, c.Proxy.DecisionTimeout, "the old key still works")
	require.Equal(t, time.Minute, c.Proxy.DecisionCacheTTL)

	_, err = load("proxy: {decision_timeout: 5s, postgres: {decision_timeout: 4s}}\n")
	require.ErrorContains(t, err, "proxy.postgres.decision_timeout: 4s, but proxy.decision_timeout is 5s: set it once, as proxy.decision_timeout (every proxy's)")
	_, err = load("proxy: {decision_timeout: -1s, decision_cache_size: -3, postgres: {startup_timeout: -1s}}\n")
	require.ErrorContains(t, err, "proxy.decision_timeout: -1s: must be positive")
	require.ErrorContains(t, err, "proxy.decision_cache_size: -3: must not be negative")
	require.ErrorContains(t, err, "proxy.postgres.startup_timeout: -1s: must be positive")
}
