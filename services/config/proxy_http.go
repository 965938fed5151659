package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HTTPProxy configures the HTTP proxy listener, which serves HTTP resources and the
// Kubernetes API (resources of type http and kubernetes).
type HTTPProxy struct {
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile are the certificate callers see. Empty: a self-signed one
	// is made in data_dir (dev-tls.crt), which clients must be told to trust. Plain HTTP
	// only with insecure_plaintext (loopback tests; never where a token crosses a network).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// InsecurePlaintext serves plain HTTP. Tokens then cross the connection in clear.
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// ReadHeaderTimeout bounds the time a client takes to send a request's headers (a
	// slowloris client is cut off); IdleTimeout how long a kept-alive connection waits for
	// its next request; BodyTimeout how long a request body may take to arrive.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	BodyTimeout       time.Duration `yaml:"body_timeout"`
	// MaxHeaderBytes bounds a request's headers; MaxBodyBytes its body (larger: 413).
	MaxHeaderBytes int   `yaml:"max_header_bytes"`
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`
	// MaxConnections bounds the client connections served at once.
	MaxConnections int `yaml:"max_connections"`
}

func (p *HTTPProxy) applyDefaults() {
	def(&p.Listen, "127.0.0.1:8443")
	def(&p.ReadHeaderTimeout, 10*time.Second)
	def(&p.IdleTimeout, 120*time.Second)
	def(&p.BodyTimeout, 60*time.Second)
	def(&p.MaxHeaderBytes, 64<<10)
	def(&p.MaxBodyBytes, 64<<20)
	def(&p.MaxConnections, 10000)
}

func (p *HTTPProxy) validate(path string, ck *checker) {
	ck.hostPort(path+".listen", p.Listen)
	if (p.TLSCertFile == "") != (p.TLSKeyFile == "") {
		ck.add(path+".tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	if p.InsecurePlaintext && p.TLSCertFile != "" {
		ck.add(path+".insecure_plaintext", "set, but so is tls_cert_file: choose one")
	}
	for name, v := range map[string]time.Duration{"read_header_timeout": p.ReadHeaderTimeout, "idle_timeout": p.IdleTimeout, "body_timeout": p.BodyTimeout} {
		if v <= 0 {
			ck.add(path+"."+name, "%s: must be positive", v)
		}
	}
	if p.MaxHeaderBytes < 1024 {
		ck.add(path+".max_header_bytes", "%d: at least 1024", p.MaxHeaderBytes)
	}
	if p.MaxBodyBytes <= 0 {
		ck.add(path+".max_body_bytes", "%d: must be positive", p.MaxBodyBytes)
	}
	if p.MaxConnections <= 0 {
		ck.add(path+".max_connections", "%d: must be positive", p.MaxConnections)
	}
}

// HTTPBackend is how the proxy reaches an HTTP resource (type http) or a Kubernetes API
// server (type kubernetes), and which requests are the resource's: those whose Host is one
// of Hosts, or whose path starts with PathPrefix (removed before the request is forwarded).
type HTTPBackend struct {
	// URL is the service's base URL (http or https); its path is put before the request's.
	URL        string   `yaml:"url"`
	Hosts      []string `yaml:"hosts"`
	PathPrefix string   `yaml:"path_prefix"`
	// CAFile verifies the service's certificate (default: the system's roots).
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name the service's certificate is checked against.
	ServerName string `yaml:"server_name"`
	// The credential the gateway calls the service with; callers never see it. Files are
	// read for every request, so a rotated credential is used at once.
	Bearer            string `yaml:"bearer"`
	BearerFile        string `yaml:"bearer_file"`
	BasicUser         string `yaml:"basic_user"`
	BasicPassword     string `yaml:"basic_password"`
	BasicPasswordFile string `yaml:"basic_password_file"`
	ClientCertFile    string `yaml:"client_cert_file"`
	ClientKeyFile     string `yaml:"client_key_file"`
	// TokenHeader is the request header the caller's token comes in (default
	// Authorization, as a Bearer token). It is removed before the request is forwarded.
	TokenHeader string `yaml:"token_header"`
	// Routes are path templates (/customers/{id}) whose parameters rules read
	// (request.http.params); OpenAPIFile adds the paths of an OpenAPI document.
	Routes      []string `yaml:"routes"`
	OpenAPIFile string   `yaml:"openapi_file"`
	// DecideBodyBytes bounds the JSON request body parsed for rules (request.http.body);
	// RecordBodyBytes what is recorded of each request and response body.
	DecideBodyBytes int64 `yaml:"decide_body_bytes"`
	RecordBodyBytes int64 `yaml:"record_body_bytes"`
	// Timeout bounds the wait for the service's response headers.
	Timeout time.Duration `yaml:"timeout"`
}

func (b *HTTPBackend) applyDefaults() {
	def(&b.TokenHeader, "Authorization")
	def(&b.DecideBodyBytes, 1<<20)
	def(&b.RecordBodyBytes, 64<<10)
	def(&b.Timeout, 60*time.Second)
}

// Defaulted returns a copy of b with its unset fields at their defaults (a resource made
// in code or through the API may not have been through ApplyDefaults).
func (b HTTPBackend) Defaulted() *HTTPBackend {
	b.applyDefaults()
	return &b
}

func (b *HTTPBackend) validate(path string, ck *checker) {
	u, err := url.Parse(b.URL)
	switch {
	case b.URL == "":
		ck.add(path+".url", "required")
	case err != nil:
		ck.add(path+".url", "%v", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		ck.add(path+".url", "%q: an http:// or https:// URL with a host", b.URL)
	case u.RawQuery != "" || u.Fragment != "":
		ck.add(path+".url", "%q: no query or fragment", b.URL)
	}
	if len(b.Hosts) == 0 && b.PathPrefix == "" {
		ck.add(path+".hosts", "hosts or path_prefix is required: which requests are this resource's")
	}
	if b.PathPrefix != "" && (!strings.HasPrefix(b.PathPrefix, "/") || strings.HasSuffix(b.PathPrefix, "/") || strings.Contains(b.PathPrefix, "//") || strings.Contains(b.PathPrefix, "..") || strings.ContainsAny(b.PathPrefix, "%?#")) {
		ck.add(path+".path_prefix", "%q: a path like /orders (starts with /, no trailing /, no . or .. segments, no %% ? #)", b.PathPrefix)
	}
	for i, h := range b.Hosts {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			ck.add(fmt.Sprintf("%s.hosts[%d]", path, i), "%q: a host name without port", h)
		}
	}
	n := 0
	for _, set := range []bool{b.Bearer != "" || b.BearerFile != "", b.BasicUser != "", b.ClientCertFile != ""} {
		if set {
			n++
		}
	}
	if b.Bearer != "" && b.BearerFile != "" {
		ck.add(path+".bearer", "bearer and bearer_file are mutually exclusive")
	}
	if b.BasicPassword != "" && b.BasicPasswordFile != "" {
		ck.add(path+".basic_password", "basic_password and basic_password_file are mutually exclusive")
	}
	if (b.BasicPassword != "" || b.BasicPasswordFile != "") && b.BasicUser == "" {
		ck.add(path+".basic_user", "required with basic_password")
	}
	if (b.ClientCertFile == "") != (b.ClientKeyFile == "") {
		ck.add(path+".client_cert_file", "client_cert_file and client_key_file go together")
	}
	if n > 1 {
		ck.add(path+".bearer", "one credential: bearer, basic or client certificate")
	}
	for _, f := range []struct{ name, file string }{{"ca_file", b.CAFile}, {"bearer_file", b.BearerFile}, {"basic_password_file", b.BasicPasswordFile}, {"client_cert_file", b.ClientCertFile}, {"client_key_file", b.ClientKeyFile}, {"openapi_file", b.OpenAPIFile}} {
		if f.file != "" {
			if _, err := os.Stat(f.file); err != nil {
				ck.add(path+"."+f.name, "%v", err)
			}
		}
	}
	if strings.ContainsAny(b.TokenHeader, " :\r\n") {
		ck.add(path+".token_header", "%q is not a header name", b.TokenHeader)
	}
	for i, r := range b.Routes {
		if !strings.HasPrefix(r, "/") {
			ck.add(fmt.Sprintf("%s.routes[%d]", path, i), "%q: a path template starting with /", r)
		}
	}
	if b.DecideBodyBytes < 0 || b.RecordBodyBytes < 0 {
		ck.add(path+".decide_body_bytes", "body limits must not be negative")
	}
	if b.Timeout < 0 {
		ck.add(path+".timeout", "%s: must not be negative (0: the default, 60s)", b.Timeout)
	}
}

// Credential reads the credential the gateway calls the service with: a bearer token, or a
// basic user and password (files read on every call, so a rotation is picked up at once).
func (b *HTTPBackend) Credential() (bearer, user, password string, err error) {
	read := func(f string) (string, error) {
		d, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", filepath.Base(f), err)
		}
		return strings.TrimRight(string(d), "\r\n"), nil
	}
	bearer, user, password = b.Bearer, b.BasicUser, b.BasicPassword
	if b.BearerFile != "" {
		if bearer, err = read(b.BearerFile); err != nil {
			return "", "", "", err
		}
	}
	if b.BasicPasswordFile != "" {
		if password, err = read(b.BasicPasswordFile); err != nil {
			return "", "", "", err
		}
	}
	return bearer, user, password, nil
}
