package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// TestSplitLeastPrivilege runs the split acceptance with least-privilege NATS over
// mutual TLS: a real nats-server whose users and permissions are what `gatehouse nats
// config` prints and which requires TLS with client certificates, the streams and buckets
// made by `gatehouse nats provision` with the provision user, and every component in its
// own process with its own nkey and client certificate, binding to them. What each
// component may not do is refused by the server (services/bus TestPermissions...); this
// shows that each may still do everything the acceptance needs.
func TestSplitLeastPrivilege(t *testing.T) {
	keys, conf := t.TempDir(), filepath.Join(t.TempDir(), "users.conf")
	out, err := exec.Command(binary, "nats", "config", "--keys", keys, "--out", conf).CombinedOutput()
	require.NoError(t, err, string(out))
	users, err := os.ReadFile(conf)
	require.NoError(t, err)
	ca := bustest.NewCA(t, "gatehouse-nats-ca")
	srvCert, srvKey := ca.Issue(t, "nats-server", true)
	srv := bustest.StartConfig(t, fmt.Sprintf("host: 127.0.0.1\nport: -1\nmax_payload: 8MB\njetstream { store_dir: \"$STORE\" }\n"+
		"tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 5 }\n%s", srvCert, srvKey, ca.File, users))
	require.True(t, strings.HasPrefix(srv.URL(), "tls://"))
	tlsEnv := func(target string) string {
		cert, key := ca.Issue(t, target, false)
		return "  tls: {ca_file: " + ca.File + ", cert_file: " + cert + ", key_file: " + key + "}\n"
	}

	// The provisioning step's config: where, and as whom.
	provision := filepath.Join(t.TempDir(), "provision.yaml")
	require.NoError(t, os.WriteFile(provision, []byte("data_dir: "+t.TempDir()+"\nnats:\n  url: "+srv.URL()+
		"\n  nkey_file: "+filepath.Join(keys, bus.ProvisionUser+".nk")+"\n  inbox_prefix: "+bus.InboxPrefix(bus.ProvisionUser)+"\n"+tlsEnv(bus.ProvisionUser)), 0o600))
	out, err = exec.Command(binary, "nats", "provision", "--config", provision).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "GH_AUDIT")

	runSplit(t, srv.URL(), func(target string) []string {
		if target == "dev-issuer" {
			return []string{"GATEHOUSE_NATS_CA_FILE=" + ca.File} // connects to no NATS; its config says tls://
		}
		cert, key := ca.Issue(t, target, false)
		return []string{"GATEHOUSE_NATS_STREAMS=bind", "GATEHOUSE_NATS_NKEY_FILE=" + filepath.Join(keys, target+".nk"),
			"GATEHOUSE_NATS_INBOX_PREFIX=" + bus.InboxPrefix(target),
			"GATEHOUSE_NATS_CA_FILE=" + ca.File, "GATEHOUSE_NATS_CERT_FILE=" + cert, "GATEHOUSE_NATS_KEY_FILE=" + key}
	})
}
