package config

import (
	"bytes"
	"fmt"
	"os"
	"time"
)

// Proxy configures the protocol proxies: what every proxy shares here, each protocol's
// listener under its name.
type Proxy struct {
	Postgres PostgresProxy `yaml:"postgres"`
	SSH      SSHProxy      `yaml:"ssh"`
	HTTP     HTTPProxy     `yaml:"http"`
	// MaskKeyFile holds the secret (at least 32 bytes) that keys the HMAC tokens of the hmac
	// mask method. Without it, hmac masking redacts instead.
	MaskKeyFile string `yaml:"mask_key_file"`
	// DecisionTimeout: no decision within it and the request is refused (fail closed); a
	// large statement gets more (3 s per MiB).
	DecisionTimeout time.Duration `yaml:"decision_timeout"`
	// DecisionCacheTTL bounds how long a cached decision is used (it is also dropped as soon
	// as the policy revision changes). DecisionCacheSize bounds the entries.
	DecisionCacheTTL  time.Duration `yaml:"decision_cache_ttl"`
	DecisionCacheSize int           `yaml:"decision_cache_size"`
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

func (p *Proxy) applyDefaults(dataDir string) {
	// The decision settings were proxy.postgres's before every proxy shared them: those
	// keys still work.
	def(&p.DecisionTimeout, p.Postgres.DecisionTimeout)
	def(&p.DecisionCacheTTL, p.Postgres.DecisionCacheTTL)
	def(&p.DecisionCacheSize, p.Postgres.DecisionCacheSize)
	def(&p.DecisionTimeout, 2*time.Second)
	def(&p.DecisionCacheTTL, 30*time.Second)
	def(&p.DecisionCacheSize, 100000)
	p.Postgres.applyDefaults()
	p.SSH.applyDefaults(dataDir)
	p.HTTP.applyDefaults()
}

func (p *Proxy) validate(path string, ck *checker) {
	if p.DecisionTimeout <= 0 {
		ck.add(path+".decision_timeout", "%s: must be positive", p.DecisionTimeout)
	}
	if p.DecisionCacheTTL < 0 {
		ck.add(path+".decision_cache_ttl", "%s: must not be negative (0 turns the cache off)", p.DecisionCacheTTL)
	}
	if p.DecisionCacheSize < 0 {
		ck.add(path+".decision_cache_size", "%d: must not be negative", p.DecisionCacheSize)
	}
	// The old keys (proxy.postgres.decision_*) agree with the proxy-wide ones or are unset.
	once := func(name string, old, cur any, unset bool) {
		if !unset && old != cur {
			ck.add(path+".postgres."+name, "%v, but %s.%s is %v: set it once, as %s.%s (every proxy's)", old, path, name, cur, path, name)
		}
	}
	pg := p.Postgres
	once("decision_timeout", pg.DecisionTimeout, p.DecisionTimeout, pg.DecisionTimeout == 0)
	once("decision_cache_ttl", pg.DecisionCacheTTL, p.DecisionCacheTTL, pg.DecisionCacheTTL == 0)
	once("decision_cache_size", pg.DecisionCacheSize, p.DecisionCacheSize, pg.DecisionCacheSize == 0)
	p.Postgres.validate(path+".postgres", ck)
	p.SSH.validate(path+".ssh", ck)
	p.HTTP.validate(path+".http", ck)
}
