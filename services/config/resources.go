package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

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
	SSH                *SSHBackend      `yaml:"ssh"`
	// HTTP is how an http resource is reached; Kubernetes how a kubernetes resource's API
	// server is (its credential must be allowed to impersonate: callers' own user and
	// groups are sent as Impersonate-User and Impersonate-Group, so the cluster's RBAC
	// applies too).
	HTTP       *HTTPBackend `yaml:"http"`
	Kubernetes *HTTPBackend `yaml:"kubernetes"`
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

// applyDefaults fills unset fields; auditMode is audit.mode, the default durability.
func (r *Resource) applyDefaults(auditMode string) {
	def(&r.Audit, auditMode)
	if r.Postgres != nil {
		def(&r.Postgres.SSLMode, "prefer")
	}
	if r.SSH != nil {
		r.SSH.applyDefaults()
	}
	if r.HTTP != nil {
		r.HTTP.applyDefaults()
	}
	if r.Kubernetes != nil {
		r.Kubernetes.applyDefaults()
	}
}

// validateResources checks every resource and records all their names in ck, for the
// sections that refer to resources.
func validateResources(path string, rs []Resource, ck *checker) {
	ck.resources = map[string]bool{}
	validateList(path, rs, ck, func(p string, r *Resource) {
		if r.Name == "" {
			ck.add(p+".name", "required")
		} else if !validName(r.Name) {
			ck.add(p+".name", "%q may hold only letters, digits, '-' and '_'", r.Name)
		} else if ck.resources[r.Name] {
			ck.add(p+".name", "duplicate resource %q", r.Name)
		}
		ck.resources[r.Name] = true
	})
}

// validate checks one resource but its name (unique among all: validateResources).
func (r *Resource) validate(path string, ck *checker) {
	ck.oneOf(path+".type", r.Type, "postgres", "ssh", "http", "kubernetes")
	ck.oneOf(path+".audit", r.Audit, "strict", "buffered")
	if r.TokenExpiry != "" {
		ck.oneOf(path+".token_expiry", r.TokenExpiry, "end", "continue")
	}
	if r.MaxSessionLifetime < 0 {
		ck.add(path+".max_session_lifetime", "%s is negative", r.MaxSessionLifetime)
	}
	if r.Type == "postgres" {
		if r.Postgres == nil {
			ck.add(path+".postgres", "required for type postgres")
			return
		}
		r.Postgres.validate(path+".postgres", ck)
	}
	if r.Type == "ssh" {
		if r.SSH == nil {
			ck.add(path+".ssh", "required for type ssh")
			return
		}
		r.SSH.validate(path+".ssh", ck)
	}
	for _, b := range []struct {
		typ, key string
		be       *HTTPBackend
	}{{"http", "http", r.HTTP}, {"kubernetes", "kubernetes", r.Kubernetes}} {
		switch {
		case r.Type == b.typ && b.be == nil:
			ck.add(path+"."+b.key, "required for type %s", b.typ)
			return
		case r.Type == b.typ:
			b.be.validate(path+"."+b.key, ck)
		case b.be != nil:
			ck.add(path+"."+b.key, "only for type %s (this resource is %q)", b.typ, r.Type)
		}
	}
	if r.Type != "postgres" && r.Postgres != nil {
		ck.add(path+".postgres", "only for type postgres (this resource is %q)", r.Type)
	}
	if r.Type != "ssh" && r.SSH != nil {
		ck.add(path+".ssh", "only for type ssh (this resource is %q)", r.Type)
	}
}

func (p *PostgresBackend) validate(path string, ck *checker) {
	ck.hostPort(path+".address", p.Address)
	ck.required(path+".database", p.Database)
	ck.required(path+".user", p.User)
	if p.Password != "" && p.PasswordFile != "" {
		ck.add(path+".password", "password and password_file are mutually exclusive")
	}
	ck.oneOf(path+".sslmode", p.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
	for j, f := range p.TrustedFunctions {
		if parts := strings.Split(f, "."); len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			ck.add(fmt.Sprintf("%s.trusted_functions[%d]", path, j), "%q is not schema.name", f)
		}
	}
}
