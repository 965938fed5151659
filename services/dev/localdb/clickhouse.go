package localdb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// ClickHouse is a running local ClickHouse server.
type ClickHouse struct {
	Dir  string
	Port int // native protocol
	// Extra is configuration merged into the server's (a file in config.d): a cluster's
	// remote_servers, macros and zookeeper.
	Extra string
	bin   []string
	proc  *proc
}

// Addr is the native-protocol host:port.
func (c *ClickHouse) Addr() string { return "127.0.0.1:" + itoa(c.Port) }

const chConfig = `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/log/server.log</log><errorlog>%[1]s/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <interserver_http_port>%[4]d</interserver_http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
`

const chUsers = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`

// chBinary finds the server: clickhouse-server (Debian's 18.16 package) or the single
// `clickhouse` binary of current releases.
func chBinary() ([]string, error) {
	if p, err := findBinary("clickhouse-server", "/usr/sbin", "/usr/bin"); err == nil {
		return []string{p}, nil
	}
	if p, err := findBinary("clickhouse", "/usr/bin"); err == nil {
		return []string{p, "server"}, nil
	}
	return nil, fmt.Errorf("%w: clickhouse-server (apt-get install clickhouse-server)", ErrNotInstalled)
}

// StartClickHouse writes a loopback-only config under dir and starts ClickHouse on port
// (0 = a free port).
func StartClickHouse(ctx context.Context, dir string, port int) (*ClickHouse, error) {
	return StartClickHouseWith(ctx, dir, port, "")
}

// StartClickHouseWith is StartClickHouse with extra configuration: the body of a
// <yandex> element (a cluster's remote_servers, macros, zookeeper), merged into the
// server's configuration from config.d.
func StartClickHouseWith(ctx context.Context, dir string, port int, extra string) (*ClickHouse, error) {
	bin, err := chBinary()
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	for _, d := range []string{"log", "data", "tmp", "user_files", "format_schemas", "config.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	c := &ClickHouse{Dir: dir, Port: port, Extra: extra, bin: bin}
	return c, c.start(ctx)
}

func (c *ClickHouse) start(ctx context.Context) error {
	httpPort, err := FreePort()
	if err != nil {
		return err
	}
	interPort, err := FreePort()
	if err != nil {
		return err
	}
	cfg := filepath.Join(c.Dir, "config.xml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(chConfig, c.Dir, c.Port, httpPort, interPort)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "users.xml"), []byte(chUsers), 0o644); err != nil {
		return err
	}
	if c.Extra != "" {
		extra := "<?xml version=\"1.0\"?>\n<yandex>\n" + c.Extra + "\n</yandex>\n"
		if err := os.WriteFile(filepath.Join(c.Dir, "config.d", "extra.xml"), []byte(extra), 0o644); err != nil {
			return err
		}
	}
	args := append(append([]string{}, c.bin[1:]...), "--config-file="+cfg)
	cmd := exec.Command(c.bin[0], args...)
	cmd.Dir = c.Dir
	if c.proc, err = startProc(cmd, filepath.Join(c.Dir, "log", "stdout.log")); err != nil {
		return err
	}
	if err := waitTCP(ctx, c.proc, c.Addr(), 60*time.Second); err != nil {
		_ = c.proc.stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("clickhouse: %w (see %s/log/error.log)", err, c.Dir)
	}
	return nil
}

// Stop shuts ClickHouse down.
func (c *ClickHouse) Stop() error { return c.proc.stop(syscall.SIGTERM, 30*time.Second) }

// Kill stops ClickHouse at once, as a crash would.
func (c *ClickHouse) Kill() { c.proc.kill() }

// Restart starts ClickHouse again on the same port and data after Stop or Kill.
func (c *ClickHouse) Restart(ctx context.Context) error { return c.start(ctx) }

// CPUTime is the CPU time (user + system) the server process has used so far.
func (c *ClickHouse) CPUTime() (time.Duration, error) {
	if c.proc == nil || c.proc.cmd.Process == nil {
		return 0, fmt.Errorf("clickhouse is not running")
	}
	return procCPUTime(c.proc.cmd.Process.Pid)
}
