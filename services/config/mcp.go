package config

import (
	"net/url"
	"strings"
	"time"
)

// MCP configures the MCP server (target mcp): AI agents call its tools over streamable
// HTTP on the gateway's HTTP server, with an OIDC bearer token; every tool runs through
// the same policy, masking, approvals and recording as the protocol proxies. Every bound
// here is per agent (the token's subject) unless it says otherwise.
type MCP struct {
	// Path is where the endpoint is mounted on the HTTP server (default /mcp).
	Path string `yaml:"path"`
	// ResourceURL is the endpoint's URL as agents reach it: the protected resource of
	// RFC 9728, named in the metadata and in WWW-Authenticate. Empty: http://<server's
	// bound address><path> (fine on loopback; set it behind a load balancer or TLS).
	ResourceURL string `yaml:"resource_url"`
	// CallsPerMinute bounds tool calls per agent (default 60).
	CallsPerMinute int `yaml:"calls_per_minute"`
	// SessionsPerMinute bounds the MCP sessions an agent opens (initialize) a minute
	// (default 10); an idle session ends after 30 minutes.
	SessionsPerMinute int `yaml:"sessions_per_minute"`
	// RowsPerHour bounds the rows the query tool returns to one agent in an hour (default
	// 10000); a query that would pass it is cut where it reaches it.
	RowsPerHour int `yaml:"rows_per_hour"`
	// MaxRows (default 200), MaxResultBytes (default 256 KiB) and QueryTimeout (default
	// 30s) bound one query's result and its run.
	MaxRows        int           `yaml:"max_rows"`
	MaxResultBytes int           `yaml:"max_result_bytes"`
	QueryTimeout   time.Duration `yaml:"query_timeout"`
	// MaxRequestBytes bounds one JSON-RPC request body (default 64 KiB); MaxSQLBytes one
	// statement (default 16 KiB).
	MaxRequestBytes int `yaml:"max_request_bytes"`
	MaxSQLBytes     int `yaml:"max_sql_bytes"`
	// MaxParked bounds the statements one agent may have waiting for approval, held by the
	// gateway after the tool returned the approval id (default 4); ParkedResults is how
	// long a decided one's result is kept for approval_status (default 15m).
	MaxParked     int           `yaml:"max_parked"`
	ParkedResults time.Duration `yaml:"parked_results"`
}

func (m *MCP) applyDefaults() {
	def(&m.Path, "/mcp")
	def(&m.CallsPerMinute, 60)
	def(&m.SessionsPerMinute, 10)
	def(&m.RowsPerHour, 10000)
	def(&m.MaxRows, 200)
	def(&m.MaxResultBytes, 256<<10)
	def(&m.QueryTimeout, 30*time.Second)
	def(&m.MaxRequestBytes, 64<<10)
	def(&m.MaxSQLBytes, 16<<10)
	def(&m.MaxParked, 4)
	def(&m.ParkedResults, 15*time.Minute)
}

func (m *MCP) validate(path string, ck *checker) {
	if !strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, "?#* ") || strings.HasPrefix(m.Path, "/api/") || m.Path == "/" {
		ck.add(path+".path", "%q is not a path of its own on the HTTP server (e.g. /mcp)", m.Path)
	}
	if m.ResourceURL != "" {
		u, err := url.Parse(m.ResourceURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
			ck.add(path+".resource_url", "%q is not an absolute http(s) URL without a fragment", m.ResourceURL)
		}
	}
	bound := func(field string, v, lo, hi int) {
		if v < lo || v > hi {
			ck.add(path+"."+field, "%d is outside %d..%d", v, lo, hi)
		}
	}
	bound("calls_per_minute", m.CallsPerMinute, 1, 100000)
	bound("sessions_per_minute", m.SessionsPerMinute, 1, 10000)
	bound("rows_per_hour", m.RowsPerHour, 1, 100000000)
	bound("max_rows", m.MaxRows, 1, 100000)
	bound("max_result_bytes", m.MaxResultBytes, 1024, 64<<20)
	bound("max_request_bytes", m.MaxRequestBytes, 1024, 16<<20)
	bound("max_sql_bytes", m.MaxSQLBytes, 64, 1<<20)
	bound("max_parked", m.MaxParked, 0, 100)
	if m.MaxSQLBytes > m.MaxRequestBytes {
		ck.add(path+".max_sql_bytes", "%d is more than max_request_bytes (%d): no request could carry it", m.MaxSQLBytes, m.MaxRequestBytes)
	}
	if m.QueryTimeout < time.Second || m.QueryTimeout > 10*time.Minute {
		ck.add(path+".query_timeout", "%s is outside 1s..10m", m.QueryTimeout)
	}
	if m.ParkedResults < time.Minute || m.ParkedResults > 24*time.Hour {
		ck.add(path+".parked_results", "%s is outside 1m..24h", m.ParkedResults)
	}
}
