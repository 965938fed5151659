package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// netLAN is a network of the test's own: a Linux bridge on this machine (the host, at
// .1) and hosts in network namespaces (ip netns), each joined to the bridge by a veth
// pair. A process run on a host (ip netns exec) reaches the others and this machine over
// real interfaces; Partition takes a host's link down, so packets to and from it are
// dropped by the kernel — both ways, and nobody is told (no reset: only timeouts notice).
type netLAN struct {
	t      *testing.T
	bridge string
	prefix string // "10.<a>.<b>."
	hosts  []*netHost
}

// netHost is one network namespace on the LAN.
type netHost struct {
	ns, dev string // the namespace, and the host side of its veth pair (on the bridge)
	IP      string
}

// newNetLAN makes the bridge (removed when the test ends). It needs root and iproute2;
// without root the test is skipped (CI and `make test` run as root on this kind of machine).
func newNetLAN(t *testing.T) *netLAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	_, err := exec.LookPath("ip")
	require.NoError(t, err, "iproute2's ip is needed for network namespaces (deploy/install-deps.sh test)")
	tag := make([]byte, 3)
	_, err = rand.Read(tag)
	require.NoError(t, err)
	b, err := rand.Int(rand.Reader, big.NewInt(250))
	require.NoError(t, err)
	l := &netLAN{t: t, bridge: "ghbr" + hex.EncodeToString(tag), prefix: fmt.Sprintf("10.%d.%d.", 200+tag[0]%50, 1+b.Int64())}
	t.Cleanup(func() {
		for _, h := range l.hosts {
			_ = exec.Command("ip", "netns", "del", h.ns).Run()
		}
		_ = exec.Command("ip", "link", "del", l.bridge).Run()
	})
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("addr", "add", l.HostIP()+"/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	return l
}

// HostIP is this machine's address on the LAN.
func (l *netLAN) HostIP() string { return l.prefix + "1" }

// ip runs an ip command, failing the test with its output.
func (l *netLAN) ip(args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(l.t, err, "ip %s: %s", strings.Join(args, " "), out)
}

// Host adds a network namespace joined to the bridge.
func (l *netLAN) Host() *netHost {
	l.t.Helper()
	n := len(l.hosts) + 2
	h := &netHost{ns: fmt.Sprintf("%s-%d", l.bridge, n), dev: fmt.Sprintf("%sv%d", l.bridge, n), IP: fmt.Sprintf("%s%d", l.prefix, n)}
	l.hosts = append(l.hosts, h)
	l.ip("netns", "add", h.ns)
	l.ip("link", "add", h.dev, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	l.ip("link", "set", h.dev, "master", l.bridge)
	l.ip("link", "set", h.dev, "up")
	l.ip("-n", h.ns, "addr", "add", h.IP+"/24", "dev", "eth0")
	l.ip("-n", h.ns, "link", "set", "eth0", "up")
	l.ip("-n", h.ns, "link", "set", "lo", "up")
	return h
}

// Partition drops every packet to and from h until Heal.
func (l *netLAN) Partition(h *netHost) { l.t.Helper(); l.ip("link", "set", h.dev, "down") }

// Heal lets h's packets through again.
func (l *netLAN) Heal(h *netHost) { l.t.Helper(); l.ip("link", "set", h.dev, "up") }

// startProcessIn starts the gatehouse binary inside h's network namespace (ip netns exec
// replaces itself with the binary: the process is the binary's).
func startProcessIn(t *testing.T, h *netHost, env []string, args ...string) *process {
	t.Helper()
	return startCommand(t, env, "ip", append([]string{"netns", "exec", h.ns, binary}, args...)...)
}
