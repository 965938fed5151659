package app

// The API `gatehouse connect` reads: how a client reaches a resource through the gateway
// (the proxy's address as clients dial it, the database name, whether the proxy speaks
// TLS, and the certificate the PostgreSQL proxy presents). It names no backend: what lies
// behind the proxy stays in the configuration.
//
//	GET /api/v1/connect/{resource}  bearer token (anyone's): ConnectInfo

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
)

// ConnectPath is followed by the resource's name.
const ConnectPath = "/api/v1/connect/"

// ConnectInfo is the answer of GET /api/v1/connect/{resource}.
type ConnectInfo struct {
	Resource string `json:"resource"`
	// Protocol is the resource's type: postgres, ssh, kubernetes or http.
	Protocol string `json:"protocol"`
	// Host and Port are the proxy's address as clients dial it.
	Host string `json:"host"`
	Port int    `json:"port"`
	// Database is a postgres client's dbname: the resource's name picks the resource.
	Database string `json:"database,omitempty"`
	// TLS says the proxy speaks TLS (postgres: sslmode=verify-full works; http: https).
	TLS bool `json:"tls"`
	// CAPEM is, for postgres over TLS, the certificates (PEM) of proxy.postgres.tls_cert_file,
	// for a client's sslrootcert: a self-signed certificate, or a chain whose last is the
	// root clients are to trust. Never a key.
	CAPEM string `json:"ca_pem,omitempty"`
	// URL is where an http or kubernetes resource is served.
	URL string `json:"url,omitempty"`
}

// connectAPI answers the connect route.
type connectAPI struct {
	resource func(name string) (*config.Resource, bool)
	// addr is a protocol proxy's address ("postgres", "ssh", "http"): its bound address,
	// else its configured one.
	addr func(protocol string) string
	// tls says whether a protocol's proxy speaks TLS.
	tls func(protocol string) bool
	// postgresCA is the PEM of the PostgreSQL proxy's certificate file (nil without TLS).
	postgresCA func() ([]byte, error)
}

// connectRegistered holds the apps whose connect route is registered: every proxy module
// calls registerConnectAPI, the route is added once.
var connectRegistered sync.Map

// registerConnectAPI adds GET /api/v1/connect/{resource} to the app's HTTP server, once;
// any proxy module calls it when its proxy listens.
func (a *App) registerConnectAPI() {
	if _, done := connectRegistered.LoadOrStore(a, true); done {
		return
	}
	pc := a.cfg.Proxy
	k := &connectAPI{resource: a.resources.Resource,
		addr: func(protocol string) string {
			if addr := a.ListenAddr(protocol); addr != "" {
				return addr
			}
			switch protocol {
			case "postgres":
				return pc.Postgres.Listen
			case "ssh":
				return pc.SSH.Listen
			}
			return pc.HTTP.Listen
		},
		tls: func(protocol string) bool {
			if protocol == "postgres" {
				return pc.Postgres.TLSCertFile != ""
			}
			return !pc.HTTP.InsecurePlaintext
		},
		postgresCA: func() ([]byte, error) {
			if pc.Postgres.TLSCertFile == "" {
				return nil, nil
			}
			return os.ReadFile(pc.Postgres.TLSCertFile)
		}}
	k.register(a.echo, a.verifier)
}

func (k *connectAPI) register(e *echo.Echo, v *identity.Verifier) {
	e.GET(ConnectPath+":resource", k.connect, v.Middleware(nil, ""))
}

func (k *connectAPI) connect(c echo.Context) error {
	name := c.Param("resource")
	r, ok := k.resource(name)
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no resource %q", name))
	}
	proxy := r.Type
	if proxy == "kubernetes" {
		proxy = "http"
	}
	// The kubeconfig API's rule: a wildcard host is the host the client reached us at.
	addr := (&kubeAPI{httpAddr: func() string { return k.addr(proxy) }}).proxyAddr(c)
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, fmt.Sprintf("the %s proxy's address %q is not host:port", proxy, addr))
	}
	port, _ := strconv.Atoi(portText)
	out := ConnectInfo{Resource: r.Name, Protocol: r.Type, Host: host, Port: port, TLS: k.tls(proxy)}
	switch r.Type {
	case "postgres":
		out.Database = r.Name
		if out.TLS && k.postgresCA != nil {
			b, err := k.postgresCA()
			if err != nil {
				return echo.NewHTTPError(http.StatusServiceUnavailable, "the PostgreSQL proxy's certificate cannot be read")
			}
			out.CAPEM = string(certificatesPEM(b))
		}
	case "http", "kubernetes":
		b := r.HTTP
		if r.Type == "kubernetes" {
			b = r.Kubernetes
		}
		scheme := "https"
		if !out.TLS {
			scheme = "http"
		}
		if b != nil && b.PathPrefix == "" && len(b.Hosts) > 0 {
			addr = net.JoinHostPort(b.Hosts[0], portText)
		}
		out.URL = scheme + "://" + addr
		if b != nil {
			out.URL += b.PathPrefix
		}
	}
	return c.JSON(http.StatusOK, out)
}

// certificatesPEM is the CERTIFICATE blocks of a PEM file, nothing else: a certificate file
// may hold the key too (tls.LoadX509KeyPair reads either from one file).
func certificatesPEM(b []byte) []byte {
	var out []byte
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return out
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})...)
		}
	}
}
