package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// TestNATSSection checks the production settings of the nats section: every bad value is
// refused with its field and what to do, and nothing secret is in a message.
func TestNATSSection(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte(content), mode))
		return f
	}
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, _ := kp.Seed()
	seedFile := write("proxy.nk", string(seed)+"\n", 0o600)
	badSeed := write("bad.nk", "SUNOTASEED\n", 0o600)
	pwFile := write("pw", "hunter2-secret\n", 0o600)
	emptyPW := write("empty", "", 0o600)
	notPEM := write("ca.pem", "not a certificate", 0o600)
	missing := filepath.Join(dir, "missing")
	// A credentials file as nsc writes it: a user JWT signed by an account, and the seed.
	acct, err := nkeys.CreateAccount()
	require.NoError(t, err)
	upub, _ := kp.PublicKey()
	tok, err := jwt.NewUserClaims(upub).Encode(acct)
	require.NoError(t, err)
	creds, err := jwt.FormatUserConfig(tok, seed)
	require.NoError(t, err)
	credsFile := write("proxy.creds", string(creds), 0o600)

	load := func(nats string) (*config.Config, error) {
		src := strings.Replace(valid, `nats: {url: "nats://127.0.0.1:4222"}`, nats, 1)
		c, err := config.Parse([]byte(src))
		require.NoError(t, err)
		return c, c.Validate()
	}
	for _, tc := range []struct {
		nats string
		want string // "" = valid
	}{
		{`nats: {url: "nats://n1:4222,nats://n2:4222", replicas: 3, streams: bind, nkey_file: ` + seedFile + `, inbox_prefix: _INBOX.proxy-postgres}`, ""},
		{`nats: {urls: ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"], user: gh, password_file: ` + pwFile + `}`, ""},
		{`nats: {url: "nats://n1:4222", replicas: 2}`, "nats.replicas: 2: must be 1 or 3"},
		{`nats: {replicas: 3}`, "nats.replicas: 3 needs a NATS cluster (nats.url): the embedded server is one node"},
		{`nats: {nkey_file: ` + seedFile + `}`, "the embedded server has no users and no TLS"},
		{`nats: {streams: bind}`, "nats.streams: bind needs a NATS server at nats.url"},
		{`nats: {url: "nats://n1:4222", streams: maybe}`, `nats.streams: "maybe" is not one of create, bind`},
		{`nats: {url: "tls://n1:4222", credentials_file: ` + credsFile + `, tls: {required: true}}`, ""},
		{`nats: {url: "n1:4222"}`, `nats.url: "n1:4222" is not a URL`},
		{`nats: {url: "http://n1:4222"}`, "scheme http is not nats or tls"},
		{`nats: {url: "nats://gh:hunter2@n1:4222"}`, "carries credentials"},
		{`nats: {url: "nats://n1:4222", urls: ["nats://n2:4222"]}`, "nats.urls: set url or urls, not both"},
		{`nats: {url: "nats://n1:4222", tls: {ca_file: ` + notPEM + `}}`, "is nats:// but nats.tls is set: write tls://n1:4222"},
		{`nats: {url: "tls://n1:4222"}`, "nats.tls: \"tls://n1:4222\" is tls:// but nats.tls is not set"},
		{`nats: {url: "tls://n1:4222", tls: {required: true}}`, ""},
		{`nats: {url: "tls://n1:4222", tls: {ca_file: ` + missing + `}}`, "tls.ca_file: open " + missing},
		{`nats: {url: "tls://n1:4222", tls: {ca_file: ` + notPEM + `}}`, "no PEM certificate in it"},
		{`nats: {url: "tls://n1:4222", tls: {required: true, cert_file: ` + notPEM + `}}`, "tls.cert_file and tls.key_file go together"},
		{`nats: {url: "tls://n1:4222", tls: {required: true, cert_file: ` + notPEM + `, key_file: ` + notPEM + `}}`, "tls.cert_file " + notPEM + " with tls.key_file"},
		{`nats: {url: "nats://n1:4222", nkey_file: ` + missing + `}`, "nkey_file: open " + missing},
		{`nats: {url: "nats://n1:4222", nkey_file: ` + badSeed + `}`, "not an nkey seed"},
		{`nats: {url: "nats://n1:4222", credentials_file: ` + seedFile + `}`, "no user JWT in it"},
		{`nats: {url: "nats://n1:4222", user: gh}`, "user and password_file go together"},
		{`nats: {url: "nats://n1:4222", user: gh, password_file: ` + emptyPW + `}`, "password_file " + emptyPW + " is empty"},
		{`nats: {url: "nats://n1:4222", nkey_file: ` + seedFile + `, user: gh, password_file: ` + pwFile + `}`, "choose one way to authenticate"},
		{`nats: {url: "nats://n1:4222", inbox_prefix: "_INBOX.>"}`, "nats.inbox_prefix"},
	} {
		_, err := load(tc.nats)
		if tc.want == "" {
			require.NoError(t, err, tc.nats)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.nats)
		require.NotContains(t, err.Error(), "hunter2", "no secret in an error")
		require.NotContains(t, err.Error(), string(seed))
	}
	c, err := load(`nats: {urls: ["nats://n1:4222", " nats://n2:4222 "]}`)
	require.NoError(t, err)
	require.Equal(t, "nats://n1:4222,nats://n2:4222", c.NATS.ServerURL())
	require.Equal(t, 1, c.NATS.Replicas)
	require.Equal(t, config.StreamsCreate, c.NATS.Streams)
}

// TestNATSServerConfig checks nats.server_config, the nats-server configuration a
// `--target=nats` process runs one node of a cluster from: the file must parse, enable
// JetStream with a store of its own, and have a cluster for replicas: 3; it excludes url.
func TestNATSServerConfig(t *testing.T) {
	t.Setenv("DEMO_PW", "x")
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
		return f
	}
	store := filepath.Join(dir, "js")
	node := write("n1.conf", "server_name: n1\nlisten: 127.0.0.1:4222\njetstream { store_dir: \""+store+"\" }\n"+
		"cluster { name: gatehouse, listen: 127.0.0.1:6222, routes: [nats-route://127.0.0.1:6223] }\n")
	single := write("single.conf", "listen: 127.0.0.1:4222\njetstream { store_dir: \""+store+"\" }\n")
	noJS := write("nojs.conf", "listen: 127.0.0.1:4222\n")
	noStore := write("nostore.conf", "listen: 127.0.0.1:4222\njetstream: enabled\n")
	broken := write("broken.conf", "listen: {{\n")
	missing := filepath.Join(dir, "missing.conf")
	for _, tc := range []struct {
		nats string
		want string // "" = valid
	}{
		{`nats: {server_config: ` + node + `, replicas: 3}`, ""},
		{`nats: {server_config: ` + single + `}`, ""},
		{`nats: {server_config: ` + single + `, replicas: 3}`, "nats.replicas: 3 needs a NATS cluster: " + single + " has no cluster block (one node)"},
		{`nats: {server_config: ` + node + `, url: "nats://n1:4222"}`, "nats.server_config: runs a NATS node in this process, and nats.url names servers to connect to: set one of them"},
		{`nats: {server_config: ` + noJS + `}`, "nats.server_config: " + noJS + " does not enable JetStream"},
		{`nats: {server_config: ` + noStore + `}`, "nats.server_config: " + noStore + ": jetstream has no store_dir"},
		{`nats: {server_config: ` + broken + `}`, "nats.server_config: " + broken + ": "},
		{`nats: {server_config: ` + missing + `}`, "nats.server_config: " + missing + ": "},
		{`nats: {server_config: ` + node + `, tls: {required: true}}`, "nats.tls: with server_config this process's components reach their node in-process"},
	} {
		src := strings.Replace(valid, `nats: {url: "nats://127.0.0.1:4222"}`, tc.nats, 1)
		c, err := config.Parse([]byte(src))
		require.NoError(t, err)
		err = c.Validate()
		if tc.want == "" {
			require.NoError(t, err, tc.nats)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.nats)
	}
}
