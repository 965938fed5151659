package config

import "time"

// PostgresProxy configures the PostgreSQL proxy listener.
type PostgresProxy struct {
	Listen          string        `yaml:"listen"`
	MaxMessageBytes int           `yaml:"max_message_bytes"`
	StartupTimeout  time.Duration `yaml:"startup_timeout"`
	// DecisionTimeout, DecisionCacheTTL and DecisionCacheSize are read as the proxy-wide
	// settings of the same names (proxy.decision_timeout...) when those are not set: they
	// were the PostgreSQL proxy's before every proxy shared them.
	DecisionTimeout   time.Duration `yaml:"decision_timeout"`
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
	// MaxConnecting bounds the backend connections the proxy opens at once to one
	// resource's database (default 16): a storm of clients (a fleet reconnecting after a
	// restart) then waits its turn within startup_timeout instead of making PostgreSQL
	// fork for all of them at once, which timed every one of them out.
	MaxConnecting int `yaml:"max_connecting"`
}

func (p *PostgresProxy) applyDefaults() {
	def(&p.Listen, "127.0.0.1:6432")
	def(&p.MaxMessageBytes, 16<<20)
	def(&p.StartupTimeout, 10*time.Second)
	def(&p.CatalogRefresh, time.Minute)
	def(&p.MaxConnecting, 16)
}

func (p *PostgresProxy) validate(path string, ck *checker) {
	ck.hostPort(path+".listen", p.Listen)
	if p.StartupTimeout <= 0 {
		ck.add(path+".startup_timeout", "%s: must be positive", p.StartupTimeout)
	}
	if p.CatalogRefresh <= 0 {
		ck.add(path+".catalog_refresh", "%s: must be positive", p.CatalogRefresh)
	}
	if p.MaxConnecting <= 0 {
		ck.add(path+".max_connecting", "%d: must be positive", p.MaxConnecting)
	}
	if p.MaxMessageBytes < 1024 {
		ck.add(path+".max_message_bytes", "%d is below the 1024-byte minimum", p.MaxMessageBytes)
	}
	if (p.TLSCertFile == "") != (p.TLSKeyFile == "") {
		ck.add(path+".tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
}
