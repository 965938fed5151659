package bustest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/services/bus/embedded"
)

// StartConfig starts a NATS server from a nats-server configuration (written to a
// temporary file; "$STORE" in conf is replaced by a temporary JetStream store directory)
// and returns it, shut down at the end of the test.
func StartConfig(t testing.TB, conf string) *embedded.Server {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "nats.conf")
	conf = strings.ReplaceAll(conf, "$STORE", filepath.Join(dir, "jetstream"))
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.StartFile(file)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// FreePort is a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Cluster starts n NATS servers with JetStream, joined by routes into one cluster, each
// with its own store in a temporary directory, and waits until JetStream has a meta
// leader. extra is added to every node's configuration (users, TLS).
func Cluster(t testing.TB, n int, extra string) []*embedded.Server {
	t.Helper()
	client, route := make([]int, n), make([]int, n)
	for i := range n {
		client[i], route[i] = FreePort(t), FreePort(t)
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", route[i]))
	}
	nodes := make([]*embedded.Server, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			conf := fmt.Sprintf("server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\ncluster { name: gatehouse, listen: 127.0.0.1:%d, routes: [%s] }\n%s",
				i+1, client[i], filepath.Join(t.TempDir(), "js"), route[i], strings.Join(routes, ", "), extra)
			file := filepath.Join(t.TempDir(), "nats.conf")
			if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
				errs <- err
				return
			}
			// JetStream in a cluster is ready once the routes are up: start all at once.
			srv, err := embedded.StartFile(file)
			nodes[i] = srv
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("start cluster: %v", err)
		}
	}
	for _, s := range nodes {
		t.Cleanup(s.Shutdown)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range nodes {
		for !s.JetStreamReady() {
			if time.Now().After(deadline) {
				t.Fatalf("nats cluster: JetStream of %s not current after 60s", s.Name())
			}
			time.Sleep(50 * time.Millisecond) // polling a condition, not waiting for time
		}
	}
	return nodes
}
