package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// With dev_issuer: false, `gatehouse dev` announces the issuers it trusts, and neither the
// development issuer nor `token --dev` (which would fail: nothing serves it).
func TestDevBannerFollowsTheDevIssuerSetting(t *testing.T) {
	cfg := &config.Config{DataDir: "/tmp/gh", Identity: config.Identity{DevIssuer: true}}
	cfg.Proxy.Postgres.TLSCertFile = "/tmp/gh/cert.pem"
	b := bannerFor(cfg, "127.0.0.1:6432", "http://127.0.0.1:8080", "nats://127.0.0.1:4222", "http://127.0.0.1:8080/dev/oidc")
	var on bytes.Buffer
	b.write(&on)
	require.Contains(t, on.String(), "dev OIDC issuer    http://127.0.0.1:8080/dev/oidc")
	require.Contains(t, on.String(), "export PGPASSWORD=$(bin/gatehouse token --dev --sub svc-orders --groups orders-readers)")
	require.Contains(t, on.String(), `psql "host=127.0.0.1 port=6432 dbname=demo user=svc-orders"`)
	require.NotContains(t, on.String(), "SSH proxy", "no SSH proxy running, none announced")

	// With the SSH proxy and the demo host: how to sign in and connect.
	cfg.Resources = append(cfg.Resources, config.Resource{Name: demoHostName, Type: "ssh"})
	b = bannerFor(cfg, "127.0.0.1:6432", "http://127.0.0.1:8080", "nats://127.0.0.1:4222", "http://127.0.0.1:8080/dev/oidc")
	b.SSH = "127.0.0.1:2222"
	var ssh bytes.Buffer
	b.write(&ssh)
	require.Contains(t, ssh.String(), "SSH proxy          127.0.0.1:2222")
	require.Contains(t, ssh.String(), "bin/gatehouse ssh login --gateway http://127.0.0.1:8080 > /tmp/gh/ssh_config")
	require.Contains(t, ssh.String(), "ssh -F /tmp/gh/ssh_config demo-host+root@gatehouse uptime")
	cfg.Resources = nil

	cfg.Identity = config.Identity{DevIssuer: false, Issuers: []config.Issuer{{Issuer: "http://127.0.0.1:5556/dex", Audiences: []string{"gatehouse", "gatehouse-cli"}}}}
	b = bannerFor(cfg, "127.0.0.1:6432", "http://127.0.0.1:8080", "nats://127.0.0.1:4222", "http://127.0.0.1:8080/dev/oidc")
	var off bytes.Buffer
	b.write(&off)
	require.NotContains(t, off.String(), "dev OIDC issuer")
	require.NotContains(t, off.String(), "--dev")
	require.NotContains(t, off.String(), "/dev/oidc")
	require.Contains(t, off.String(), "token issuer       http://127.0.0.1:5556/dex   (audience gatehouse, gatehouse-cli)")
	require.Contains(t, off.String(), "docs/identity.md")
	require.Contains(t, off.String(), `psql "host=127.0.0.1 port=6432 dbname=demo user=svc-orders"`)
}
