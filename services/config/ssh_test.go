package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
	"github.com/gatehouse/gatehouse/services/sshcert"
)

func TestSSHResources(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	dir := t.TempDir()
	key := filepath.Join(dir, "gw")
	host, err := sshcert.LoadOrCreateKey(filepath.Join(dir, "host"))
	require.NoError(t, err)
	_, err = sshcert.LoadOrCreateKey(key)
	require.NoError(t, err)
	hostLine, err := os.ReadFile(filepath.Join(dir, "host.pub"))
	require.NoError(t, err)
	load := func(res string) (*config.Config, error) {
		c, err := config.Parse([]byte(strings.Replace(valid, "policies:", res+"policies:", 1)))
		require.NoError(t, err)
		return c, c.Validate()
	}
	c, err := load(`  - name: web-1
    type: ssh
    ssh: {address: "10.0.0.5:22", logins: [deploy, root], key_file: "` + key + `", host_key: "` + string(hostLine[:len(hostLine)-1]) + `"}
`)
	require.NoError(t, err)
	r, ok := c.Resource("web-1")
	require.True(t, ok)
	require.Equal(t, 10*time.Second, r.SSH.ConnectTimeout)
	require.Equal(t, "127.0.0.1:2222", c.Proxy.SSH.Listen)
	require.Equal(t, 16, c.Proxy.SSH.MaxChannels)
	s, err := r.SSH.Signer()
	require.NoError(t, err)
	require.NotNil(t, s)
	cb, err := r.SSH.HostKeyCallback()
	require.NoError(t, err)
	require.NoError(t, cb("10.0.0.5:22", nil, host.PublicKey()))
	other, err := sshcert.LoadOrCreateKey(filepath.Join(dir, "other"))
	require.NoError(t, err)
	require.Error(t, cb("10.0.0.5:22", nil, other.PublicKey()), "another host key passed the pin")

	for _, tc := range []struct{ res, want string }{
		{"  - {name: w, type: ssh}\n", "resources[1].ssh: required for type ssh"},
		{"  - {name: w, type: ssh, ssh: {address: h, logins: [root], key_file: k, host_key: x}}\n", "resources[1].ssh.address"},
		{"  - {name: w, type: ssh, ssh: {address: 'h:22', key_file: k, host_key: x}}\n", "resources[1].ssh.logins: required"},
		{"  - {name: w, type: ssh, ssh: {address: 'h:22', logins: ['-oProxyCommand=x'], key_file: k, host_key: x}}\n", "resources[1].ssh.logins[0]"},
		{"  - {name: w, type: ssh, ssh: {address: 'h:22', logins: [root], key_file: k}}\n", "resources[1].ssh.host_key: required (or host_ca)"},
		{"  - {name: w, type: ssh, ssh: {address: 'h:22', logins: [root], key_file: k, host_key: 'not a key'}}\n", "resources[1].ssh.host_key"},
		{"  - {name: w, type: postgres, postgres: {address: 'h:5432', database: d, user: u}, ssh: {address: 'h:22'}}\n", "resources[1].ssh: only for type ssh"},
	} {
		_, err := load(tc.res)
		require.ErrorContains(t, err, tc.want, tc.res)
	}
	_, err = config.Parse([]byte(valid + "proxy: {ssh: {ciphers: [rc4]}}\n"))
	require.NoError(t, err)
	c, _ = config.Parse([]byte(valid + "proxy: {ssh: {ciphers: [rc4], max_channels: -1}}\n"))
	err = c.Validate()
	require.ErrorContains(t, err, "proxy.ssh.ciphers[0]")
	require.ErrorContains(t, err, "proxy.ssh.max_channels")
}
