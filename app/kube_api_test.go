package app

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/identity"
	"github.com/gatehouse/gatehouse/sshca"
)

// The cluster route answers a kubernetes resource's server (the proxy's address, a
// wildcard host replaced by the one the client used, plus the path prefix) and the
// proxy's certificate, to a valid token only; other resources are 404s.
func TestKubeAPI(t *testing.T) {
	e, srv, dev, v := apiServer(t)
	resources := map[string]*config.Resource{
		"dev-k8s":  {Name: "dev-k8s", Type: "kubernetes", Kubernetes: &config.HTTPBackend{URL: "https://10.0.0.1:6443", PathPrefix: "/k8s/dev"}},
		"by-host":  {Name: "by-host", Type: "kubernetes", Kubernetes: &config.HTTPBackend{URL: "https://10.0.0.2:6443", Hosts: []string{"k8s.example.com"}}},
		"orders":   {Name: "orders", Type: "http", HTTP: &config.HTTPBackend{URL: "http://10.0.0.3", PathPrefix: "/orders"}},
		"payments": {Name: "payments", Type: "postgres"},
	}
	addr := "0.0.0.0:8443"
	var certErr error
	k := &kubeAPI{
		resource: func(n string) (*config.Resource, bool) { r, ok := resources[n]; return r, ok },
		httpAddr: func() string { return addr },
		caPEM: func() ([]byte, error) {
			// The file holds the key too: only the certificate may be handed out.
			return []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n"), certErr
		},
		login: sshca.Login{Issuer: dev.Issuer(), ClientID: "gatehouse-cli", Scopes: []string{"openid"}},
	}
	k.register(e, v)
	tok, err := dev.Mint(identity.TokenRequest{Subject: "u-ada", Name: "ada@example.com", TTL: time.Hour, Kind: "human"})
	require.NoError(t, err)

	get := func(path, token string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out
	}

	code, out := get(KubeClustersPath+"dev-k8s", tok)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, map[string]any{"resource": "dev-k8s", "server": "https://127.0.0.1:8443/k8s/dev",
		"ca_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, out)

	code, out = get(KubeClustersPath+"by-host", tok)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, "https://k8s.example.com:8443", out["server"])

	addr = "gatehouse.example.com:443"
	code, out = get(KubeClustersPath+"dev-k8s", tok)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, "https://gatehouse.example.com:443/k8s/dev", out["server"])

	for _, name := range []string{"orders", "payments", "nosuch"} {
		code, out = get(KubeClustersPath+name, tok)
		require.Equal(t, http.StatusNotFound, code, name)
		require.Contains(t, out["message"], "no kubernetes resource")
	}

	code, _ = get(KubeClustersPath+"dev-k8s", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(KubeClustersPath+"dev-k8s", tok[:len(tok)-4]+"AAAA")
	require.Equal(t, http.StatusUnauthorized, code)

	certErr = errors.New("no certificate yet")
	code, out = get(KubeClustersPath+"dev-k8s", tok)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, out["message"], "no certificate yet")

	// Plain HTTP: an http:// server and no CA.
	k.plaintext = true
	code, out = get(KubeClustersPath+"dev-k8s", tok)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, map[string]any{"resource": "dev-k8s", "server": "http://gatehouse.example.com:443/k8s/dev"}, out)

	// Where to sign in: public.
	code, out = get(KubeLoginPath, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, dev.Issuer(), out["issuer"])
	require.Equal(t, "gatehouse-cli", out["client_id"])
}
