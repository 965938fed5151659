package config

import (
	"net"
	"strings"
	"time"
)

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

// validateSinks checks every sink: each with its own name, since a sink's name keys its
// durable position in GH_AUDIT.
func validateSinks(path string, sinks []Sink, ck *checker) {
	names := map[string]bool{}
	validateList(path, sinks, ck, func(p string, sk *Sink) {
		if !validName(sk.Name) || sk.Name == "" {
			ck.add(p+".name", "%q: letters, digits, '-' and '_' only", sk.Name)
		} else if names[sk.Name] {
			ck.add(p+".name", "duplicate sink %q", sk.Name)
		}
		names[sk.Name] = true
	})
}

// validate checks one sink but its name (unique among all: validateSinks).
func (sk *Sink) validate(path string, ck *checker) {
	ck.oneOf(path+".type", sk.Type, "http", "syslog")
	switch sk.Type {
	case "http":
		if !strings.HasPrefix(sk.URL, "https://") && !strings.HasPrefix(sk.URL, "http://") {
			ck.add(path+".url", "%q is not an http(s) URL", sk.URL)
		}
	case "syslog":
		if _, port, err := net.SplitHostPort(sk.Address); err != nil || port == "" {
			ck.add(path+".address", "%q is not host:port", sk.Address)
		}
		if _, ok := SyslogFacilities[sk.Facility]; sk.Facility != "" && !ok {
			ck.add(path+".facility", "%q is not a syslog facility (kern, user, ..., authpriv, audit, local0..local7)", sk.Facility)
		}
		if sk.MaxMessageBytes != 0 && sk.MaxMessageBytes < 480 {
			ck.add(path+".max_message_bytes", "%d is below the 480-byte minimum of RFC 5424", sk.MaxMessageBytes)
		}
		if t := sk.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
			ck.add(path+".tls", "cert_file and key_file go together")
		}
	}
}
