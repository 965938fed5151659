package http_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/schemas"
	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
)

// TestBasicCredential: the gateway calls a service with the basic credential it holds.
func TestBasicCredential(t *testing.T) {
	e := start(t)
	be := *e.resource["orders"].HTTP
	be.PathPrefix, be.Bearer, be.BasicUser, be.BasicPassword = "/basic", "", "svc-user", "svc-pass-91"
	e.addResource(&config.Resource{Name: "orders-nginx", Type: "http", Audit: "buffered", HTTP: &be})
	body, code, _ := e.curl(t, e.token, e.url+"/basic/x")
	require.Equal(t, 200, code, body)
	require.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("svc-user:svc-pass-91")), decodeEcho(t, body).Authorization)
}

// TestClientCertificateCredential: the gateway calls a TLS service that requires a client
// certificate with the one it holds, checking the service's certificate against its CA.
func TestClientCertificateCredential(t *testing.T) {
	e := start(t)
	var peer string
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			peer = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprint(w, "hello over mutual TLS")
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	up.StartTLS()
	t.Cleanup(up.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "service-ca.pem")
	require.NoError(t, os.WriteFile(ca, pemOf(up.Certificate().Raw), 0o600))
	cert, key, err := devcert.Ensure(t.TempDir()) // a key pair the gateway presents
	require.NoError(t, err)
	be := *e.resource["orders"].HTTP
	be.URL, be.PathPrefix, be.Bearer, be.CAFile, be.ClientCertFile, be.ClientKeyFile = up.URL, "/mtls", "", ca, cert, key
	e.addResource(&config.Resource{Name: "orders-nginx", Type: "http", Audit: "buffered", HTTP: &be})
	body, code, _ := e.curl(t, e.token, e.url+"/mtls/x")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello over mutual TLS", body)
	require.Equal(t, "localhost", peer, "the service saw the gateway's client certificate")

	// A service whose certificate the CA does not vouch for is not called.
	be2 := be
	be2.CAFile = cert
	be2.PathPrefix = "/wrong-ca"
	e.addResource(&config.Resource{Name: "orders-host", Type: "http", Audit: "buffered", HTTP: &be2})
	_, code, _ = e.curl(t, e.token, e.url+"/wrong-ca/x")
	require.Equal(t, 502, code)
}

// TestOpenAPIRoutes: a resource's OpenAPI document gives rules the route and its path
// parameters; a literal path is its own route before a template.
func TestOpenAPIRoutes(t *testing.T) {
	e := start(t)
	doc := filepath.Join(t.TempDir(), "openapi.yaml")
	require.NoError(t, os.WriteFile(doc, []byte("openapi: 3.0.0\ninfo: {title: orders, version: '1'}\npaths:\n  /customers/{id}:\n    get: {}\n  /customers/search:\n    get: {}\n"), 0o600))
	be := *e.resource["orders"].HTTP
	be.PathPrefix, be.OpenAPIFile = "/api", doc
	e.addResource(&config.Resource{Name: "orders-nginx", Type: "http", Audit: "buffered", HTTP: &be})
	body, code, _ := e.curl(t, e.token, e.url+"/api/customers/42")
	require.Equal(t, 403, code, body)
	require.Contains(t, body, "customer 42 is off limits")
	_, code, _ = e.curl(t, e.token, e.url+"/api/customers/41")
	require.Equal(t, 200, code)
	_, code, _ = e.curl(t, e.token, e.url+"/api/customers/search")
	require.Equal(t, 200, code)
	evs := e.events(t, "orders-nginx", func(evs []schemas.Event) bool {
		return len(ofType[schemas.HttpRequest](t, evs, schemas.TypeHttpRequest)) >= 3
	})
	routes := map[string]string{}
	for _, r := range ofType[schemas.HttpRequest](t, evs, schemas.TypeHttpRequest) {
		routes[r.Path] = r.Route
	}
	require.Equal(t, "/customers/{id}", routes["/customers/42"])
	require.Equal(t, "/customers/search", routes["/customers/search"])
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
