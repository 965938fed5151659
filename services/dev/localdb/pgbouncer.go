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

// PgBouncer is a running PgBouncer (used by the bench command for comparison).
type PgBouncer struct {
	Port int
	proc *proc
}

// StartPgBouncer starts PgBouncer in session mode in dir, in front of the database db on pg,
// with one user (plain-text auth file; SCRAM-SHA-256 to clients and to the server).
func StartPgBouncer(ctx context.Context, dir string, pg *Postgres, db, user, password string, maxClients int) (*PgBouncer, error) {
	bin, err := findBinary("pgbouncer", "/usr/sbin")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install pgbouncer)", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential() // PgBouncer, like PostgreSQL, will not run as root
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
%[1]s = host=127.0.0.1 port=%[2]d dbname=%[1]s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[3]d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[4]s/users.txt
pool_mode = session
max_client_conn = %[5]d
default_pool_size = %[5]d
logfile = %[4]s/pgbouncer.log
pidfile = %[4]s/pgbouncer.pid
log_connections = 0
log_disconnections = 0
`, db, pg.Port, port, dir, maxClients)
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(fmt.Sprintf("%q %q\n", user, password)), 0o644); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p, err := startProc(cmd, filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	b := &PgBouncer{Port: port, proc: p}
	if err := waitTCP(ctx, p, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second); err != nil {
		_ = p.stop(syscall.SIGKILL, time.Second)
		return nil, err
	}
	return b, nil
}

// Stop stops PgBouncer.
func (b *PgBouncer) Stop() error { return b.proc.stop(syscall.SIGINT, 10*time.Second) }

// CPUTime is the CPU time PgBouncer has used so far.
func (b *PgBouncer) CPUTime() (time.Duration, error) {
	if b.proc == nil || b.proc.cmd.Process == nil {
		return 0, fmt.Errorf("pgbouncer is not running")
	}
	return procCPUTime(b.proc.cmd.Process.Pid)
}
