// Package config loads the single Gatehouse YAML file: environment expansion, strict
// decoding (unknown fields are errors), defaults, and validation that names the field path
// and the reason.
package config

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// One file per section (log.go, nats.go, identity.go, proxy.go, audit.go, ...): each
// section's type sits with its defaults and its validate method. This file holds the whole
// Config, loading, and the order in which ApplyDefaults and Validate take the sections.

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
	Console    Console    `yaml:"console"`
	MCP        MCP        `yaml:"mcp"`
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
	def(&c.DataDir, ".gatehouse")
	c.Log.applyDefaults()
	c.Server.applyDefaults()
	c.NATS.applyDefaults()
	c.Identity.applyDefaults()
	c.Proxy.applyDefaults(c.DataDir)
	c.Audit.applyDefaults(c.DataDir)
	c.ClickHouse.applyDefaults()
	c.Ingest.applyDefaults()
	c.Query.applyDefaults()
	c.Console.applyDefaults(c.Server.HTTPListen)
	c.MCP.applyDefaults()
	for i := range c.Grants {
		c.Grants[i].applyDefaults()
	}
	// After the audit section: a resource's audit mode defaults to audit.mode.
	for i := range c.Resources {
		c.Resources[i].applyDefaults(c.Audit.Mode)
	}
}

// Validate checks the whole config and returns every problem with its field path.
func (c *Config) Validate() error {
	var ck checker
	c.Log.validate("log", &ck)
	c.Server.validate("server", &ck)
	c.NATS.validate("nats", &ck)
	c.Identity.validate("identity", &ck)
	c.Proxy.validate("proxy", &ck)
	c.Audit.validate("audit", &ck)
	c.ClickHouse.validate("clickhouse", &ck)
	c.Ingest.validate("ingest", &ck)
	c.Console.validate("console", &ck)
	c.MCP.validate("mcp", &ck)
	// Resources first: policies, grants and tests refer to them by name.
	validateResources("resources", c.Resources, &ck)
	validateUnique("policies", "name", "policy", c.Policies, &ck, func(p *Policy) string { return p.Name })
	if c.Slack != nil {
		c.Slack.validate("slack", &ck)
	}
	validateSinks("sinks", c.Sinks, &ck)
	validateUnique("grants", "role", "role", c.Grants, &ck, func(g *GrantRole) string { return g.Role })
	validateList("tests", c.Tests, &ck, nil)
	if len(ck.errs) > 0 {
		return ck.errs
	}
	return nil
}
