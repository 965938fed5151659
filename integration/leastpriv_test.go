package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/bus"
	"github.com/gatehouse/gatehouse/services/bus/bustest"
)

// TestSplitLeastPrivilege runs the split acceptance with least-privilege NATS: a real
// nats-server whose users and permissions are what `gatehouse nats config` prints, the
// streams and buckets made by `gatehouse nats provision` with the provision user, and
// every component in its own process with its own nkey, binding to them. What each
// component may not do is refused by the server (services/bus TestPermissions...); this
// shows that each may still do everything the acceptance needs.
func TestSplitLeastPrivilege(t *testing.T) {
	keys, conf := t.TempDir(), filepath.Join(t.TempDir(), "users.conf")
	out, err := exec.Command(binary, "nats", "config", "--keys", keys, "--out", conf).CombinedOutput()
	require.NoError(t, err, string(out))
	users, err := os.ReadFile(conf)
	require.NoError(t, err)
	srv := bustest.StartConfig(t, "host: 127.0.0.1\nport: -1\nmax_payload: 8MB\njetstream { store_dir: \"$STORE\" }\n"+string(users))

	// The provisioning step's config: where, and as whom.
	provision := filepath.Join(t.TempDir(), "provision.yaml")
	require.NoError(t, os.WriteFile(provision, []byte("data_dir: "+t.TempDir()+"\nnats:\n  url: "+srv.URL()+
		"\n  nkey_file: "+filepath.Join(keys, bus.ProvisionUser+".nk")+"\n  inbox_prefix: "+bus.InboxPrefix(bus.ProvisionUser)+"\n"), 0o600))
	out, err = exec.Command(binary, "nats", "provision", "--config", provision).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "GH_AUDIT")

	runSplit(t, srv.URL(), func(target string) []string {
		if target == "dev-issuer" {
			return nil // no NATS
		}
		return []string{"GATEHOUSE_NATS_STREAMS=bind", "GATEHOUSE_NATS_NKEY_FILE=" + filepath.Join(keys, target+".nk"),
			"GATEHOUSE_NATS_INBOX_PREFIX=" + bus.InboxPrefix(target)}
	})
}
