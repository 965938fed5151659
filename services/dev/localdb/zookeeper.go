package localdb

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ZooKeeper is a running standalone ZooKeeper (Debian's zookeeper package), which
// ClickHouse's replicated tables and ON CLUSTER statements need.
type ZooKeeper struct {
	Dir  string
	Port int
	proc *proc
}

// Addr is the client host:port.
func (z *ZooKeeper) Addr() string { return "127.0.0.1:" + itoa(z.Port) }

// zkJar is where Debian's zookeeper package puts the server; its manifest names the jars
// it needs, but not a logging backend.
const zkJar = "/usr/share/java/zookeeper.jar"

const zkConfig = `tickTime=2000
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
`

// StartZooKeeper starts a standalone ZooKeeper with its data under dir, on a free loopback
// port.
func StartZooKeeper(ctx context.Context, dir string) (*ZooKeeper, error) {
	java, err := findBinary("java", "/usr/lib/jvm/*/bin")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(zkJar); err != nil {
		return nil, fmt.Errorf("%w: %s (apt-get install zookeeper)", ErrNotInstalled, zkJar)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(zkConfig, filepath.Join(dir, "data"), port)), 0o644); err != nil {
		return nil, err
	}
	cp := zkJar
	for _, j := range []string{"/usr/share/java/slf4j-simple.jar", "/usr/share/java/slf4j-nop.jar"} {
		if _, err := os.Stat(j); err == nil {
			cp += ":" + j
			break
		}
	}
	cmd := exec.Command(java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", cp, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg)
	cmd.Dir = dir
	z := &ZooKeeper{Dir: dir, Port: port}
	if z.proc, err = startProc(cmd, filepath.Join(dir, "zookeeper.log")); err != nil {
		return nil, err
	}
	err = waitTCP(ctx, z.proc, z.Addr(), 60*time.Second)
	if err == nil {
		err = z.waitServing(ctx, 60*time.Second)
	}
	if err != nil {
		_ = z.proc.stop(syscall.SIGKILL, time.Second)
		return nil, fmt.Errorf("zookeeper: %w", err)
	}
	return z, nil
}

// waitServing waits until ZooKeeper serves requests (srvr answers with its version; ruok
// answers imok before that): its port accepts connections, and drops them, a while
// earlier, and ClickHouse 18.16 does not recover from a first connection that is dropped
// (its DDL worker gives up, and the first ON CLUSTER statement crashes the server).
func (z *ZooKeeper) waitServing(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", z.Addr(), time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write([]byte("srvr"))
			b, _ := io.ReadAll(c)
			c.Close()
			if strings.HasPrefix(string(b), "Zookeeper version") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("zookeeper on %s is not serving after %s; see %s", z.Addr(), timeout, z.proc.log)
}

// Stop shuts ZooKeeper down.
func (z *ZooKeeper) Stop() error { return z.proc.stop(syscall.SIGTERM, 10*time.Second) }
