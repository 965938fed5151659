package app

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/dev/devcert"
	"github.com/gatehouse/gatehouse/services/identity"
)

// The connect route answers how to reach a resource through its proxy, to any valid
// token, and names no backend.
func TestConnectAPI(t *testing.T) {
	e, srv, dev, v := apiServer(t)
	resources := map[string]*config.Resource{
		"demo":    {Name: "demo", Type: "postgres", Postgres: &config.PostgresBackend{Address: "10.0.0.9:5432", Database: "backend_db"}},
		"web-1":   {Name: "web-1", Type: "ssh"},
		"dev-k8s": {Name: "dev-k8s", Type: "kubernetes", Kubernetes: &config.HTTPBackend{URL: "https://10.0.0.1:6443", PathPrefix: "/k8s/dev"}},
	}
	addrs := map[string]string{"postgres": "0.0.0.0:6432", "ssh": "127.0.0.1:2222", "http": "127.0.0.1:8443"}
	k := &connectAPI{resource: func(n string) (*config.Resource, bool) { r, ok := resources[n]; return r, ok },
		addr: func(p string) string { return addrs[p] }, tls: func(p string) bool { return p == "http" }}
	k.register(e, v)
	tok, err := dev.Mint(identity.TokenRequest{Subject: "dave@example.com", Groups: []string{"engineers"}, TTL: time.Hour})
	require.NoError(t, err)
	get := func(name, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+ConnectPath+name, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("demo", tok)
	require.Equal(t, http.StatusOK, code, body)
	var ci ConnectInfo
	require.NoError(t, json.Unmarshal([]byte(body), &ci))
	require.Equal(t, ConnectInfo{Resource: "demo", Protocol: "postgres", Host: "127.0.0.1", Port: 6432, Database: "demo"}, ci)
	require.NotContains(t, body, "10.0.0.9")
	require.NotContains(t, body, "backend_db")

	code, body = get("web-1", tok)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"resource":"web-1","protocol":"ssh","host":"127.0.0.1","port":2222,"tls":false}`, body)

	code, body = get("dev-k8s", tok)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"resource":"dev-k8s","protocol":"kubernetes","host":"127.0.0.1","port":8443,"tls":true,"url":"https://127.0.0.1:8443/k8s/dev"}`, body)

	code, _ = get("nosuch", tok)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = get("demo", "")
	require.Equal(t, http.StatusUnauthorized, code)
}

// For postgres over TLS the answer carries the proxy's certificate for sslrootcert, and
// only the certificate: a file holding the key too gives the certificate alone.
func TestConnectAPIPostgresCA(t *testing.T) {
	e, srv, dev, v := apiServer(t)
	certFile, keyFile, err := devcert.Ensure(t.TempDir())
	require.NoError(t, err)
	certPEM, err := os.ReadFile(certFile)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	resources := map[string]*config.Resource{
		"demo":  {Name: "demo", Type: "postgres", Postgres: &config.PostgresBackend{Address: "10.0.0.9:5432"}},
		"web-1": {Name: "web-1", Type: "ssh"},
	}
	pgTLS := true
	k := &connectAPI{resource: func(n string) (*config.Resource, bool) { r, ok := resources[n]; return r, ok },
		addr:       func(p string) string { return "127.0.0.1:6432" },
		tls:        func(p string) bool { return p == "postgres" && pgTLS },
		postgresCA: func() ([]byte, error) { return append(append([]byte{}, keyPEM...), certPEM...), nil }}
	k.register(e, v)
	tok, err := dev.Mint(identity.TokenRequest{Subject: "dave@example.com", TTL: time.Hour})
	require.NoError(t, err)
	get := func(name string) ConnectInfo {
		req, err := http.NewRequest(http.MethodGet, srv.URL+ConnectPath+name, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		require.NotContains(t, string(b), "PRIVATE KEY")
		var ci ConnectInfo
		require.NoError(t, json.Unmarshal(b, &ci))
		return ci
	}
	ci := get("demo")
	require.True(t, ci.TLS)
	require.Equal(t, string(certPEM), ci.CAPEM)
	require.Empty(t, get("web-1").CAPEM)
	pgTLS = false
	require.Empty(t, get("demo").CAPEM)
}
