package app

// The API `gatehouse kubeconfig` and `gatehouse kube credential` read: where a kubernetes
// resource is served (the HTTP proxy's address and the resource's path prefix), the
// certificate that address presents, and where people sign in.
//
//	GET /api/v1/kube/clusters/{resource}  bearer token: {resource, server, ca_pem}
//	GET /api/v1/kube/login                public: {issuer, client_id, scopes}

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/sshca"
)

// Paths of the Kubernetes API: KubeClustersPath is followed by the resource's name.
const (
	KubeClustersPath = "/api/v1/kube/clusters/"
	KubeLoginPath    = "/api/v1/kube/login"
	// LoginPath is where any process that checks tokens says where people sign in
	// (gatehouse login): {issuer, client_id, scopes}.
	LoginPath = "/api/v1/login"
)

// KubeCluster is the answer of GET /api/v1/kube/clusters/{resource}: the URL kubectl is
// to call for the resource (the HTTP proxy's, with the resource's path prefix), and the
// certificate (PEM) that URL presents, for certificate-authority-data (empty when the
// proxy serves plain HTTP).
type KubeCluster struct {
	Resource string `json:"resource"`
	Server   string `json:"server"`
	CAPEM    string `json:"ca_pem,omitempty"`
}

// kubeAPI answers the Kubernetes API's routes.
type kubeAPI struct {
	// resource looks a resource in force up by name.
	resource func(name string) (*config.Resource, bool)
	// httpAddr is the HTTP proxy's address (host:port; a wildcard host is answered with
	// the host the client reached this API at).
	httpAddr func() string
	// plaintext: the proxy serves plain HTTP (proxy.http.insecure_plaintext).
	plaintext bool
	// caPEM is the certificate the proxy presents.
	caPEM func() ([]byte, error)
	login sshca.Login
}

// registerKubeAPI adds the Kubernetes API's routes to the app's HTTP server: httpAddr
// gives the HTTP proxy's address (its bound address once it listens; a wildcard host is
// replaced by the host the client reached the API at) and caPEM the PEM of the
// certificate it presents. The cluster route requires a valid bearer token; it answers
// 404 for a resource that is unknown or not of type kubernetes. Call it once, from the
// HTTP proxy's module, after the server and identity modules have started.
func (a *App) registerKubeAPI(httpAddr func() string, caPEM func() ([]byte, error)) {
	k := &kubeAPI{resource: a.resources.Resource, httpAddr: httpAddr, plaintext: a.cfg.Proxy.HTTP.InsecurePlaintext, caPEM: caPEM,
		login: sshca.Login{Issuer: a.cfg.Identity.LoginIssuer(a.DevIssuerURL()), ClientID: a.cfg.Identity.Login.ClientID, Scopes: a.cfg.Identity.Login.Scopes}}
	k.register(a.echo, a.verifier)
}

func (k *kubeAPI) register(e *echo.Echo, v *identity.Verifier) {
	e.GET(KubeClustersPath+":resource", k.cluster, v.Middleware(nil, ""))
	e.GET(KubeLoginPath, k.loginInfo)
}

func (k *kubeAPI) cluster(c echo.Context) error {
	name := c.Param("resource")
	r, ok := k.resource(name)
	if !ok || r.Type != "kubernetes" || r.Kubernetes == nil {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no kubernetes resource %q", name))
	}
	scheme := "https"
	if k.plaintext {
		scheme = "http"
	}
	addr := k.proxyAddr(c)
	// A resource found by its path prefix is served at the proxy's address; one found only
	// by its host name at that name, on the proxy's port.
	if r.Kubernetes.PathPrefix == "" && len(r.Kubernetes.Hosts) > 0 {
		if _, port, err := net.SplitHostPort(addr); err == nil {
			addr = net.JoinHostPort(r.Kubernetes.Hosts[0], port)
		} else {
			addr = r.Kubernetes.Hosts[0]
		}
	}
	out := KubeCluster{Resource: r.Name, Server: scheme + "://" + addr + r.Kubernetes.PathPrefix}
	if !k.plaintext {
		pem, err := k.caPEM()
		if err != nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "the HTTP proxy's certificate: "+err.Error())
		}
		// Certificates only: the file may hold the key too, which no caller may have.
		out.CAPEM = string(certificatesPEM(pem))
	}
	return c.JSON(http.StatusOK, out)
}

// proxyAddr is the host:port clients dial to reach the HTTP proxy: its address, a
// wildcard or empty host replaced by the host the client reached this API at.
func (k *kubeAPI) proxyAddr(c echo.Context) string {
	addr := k.httpAddr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = c.Request().Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
	}
	return net.JoinHostPort(host, port)
}

func (k *kubeAPI) loginInfo(c echo.Context) error {
	if k.login.Issuer == "" {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "no sign-in issuer is configured: set identity.login.issuer (one of identity.issuers)")
	}
	return c.JSON(http.StatusOK, sshca.LoginInfo{Issuer: k.login.Issuer, ClientID: k.login.ClientID, Scopes: k.login.Scopes})
}
