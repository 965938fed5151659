package localdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres is a running local PostgreSQL.
type Postgres struct {
	Dir               string // data directory
	Port              int
	SuperuserPassword string
	proc              *proc
	cred              *syscall.Credential
}

// Addr is host:port.
func (p *Postgres) Addr() string { return "127.0.0.1:" + itoa(p.Port) }

// ConnString returns a keyword/value connection string for user on database.
func (p *Postgres) ConnString(userName, password, database string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", p.Port, userName, password, database)
}

// SuperuserConnString connects as the superuser postgres.
func (p *Postgres) SuperuserConnString(database string) string {
	return p.ConnString("postgres", p.SuperuserPassword, database)
}

// postgresCredential is the postgres system user when we run as root: PostgreSQL refuses to
// run as root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres system user to run PostgreSQL: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func pgBinary(name string) (string, error) {
	return findBinary(name, "/usr/lib/postgresql/*/bin")
}

// StartPostgres initialises dir (if empty) with SCRAM-SHA-256 authentication and starts
// PostgreSQL on port (0 = a free port). Its log goes to dir + ".log".
func StartPostgres(ctx context.Context, dir string, port int) (*Postgres, error) {
	initdb, err := pgBinary("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := pgBinary("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	p := &Postgres{Dir: dir, Port: port, cred: cred}
	pwPath := dir + ".superuser-password"
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := p.initdb(initdb, pwPath); err != nil {
			return nil, err
		}
	}
	pw, err := os.ReadFile(pwPath)
	if err != nil {
		return nil, fmt.Errorf("read superuser password: %w", err)
	}
	p.SuperuserPassword = string(pw)
	cmd := exec.Command(postgres, "-D", dir, "-p", itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", "-c", "max_connections=1200", "-c", "fsync=off", "-c", "logging_collector=off")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if p.proc, err = startProc(cmd, dir+".log"); err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx); err != nil {
		_ = p.proc.stop(syscall.SIGQUIT, 5*time.Second)
		return nil, err
	}
	return p, nil
}

func (p *Postgres) initdb(initdb, pwPath string) error {
	if err := os.MkdirAll(dir0(p.Dir), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	pw := hex.EncodeToString(b[:])
	if err := os.WriteFile(pwPath, []byte(pw), 0o600); err != nil {
		return err
	}
	// initdb reads the password from a file the postgres user can read.
	tmp := p.Dir + ".pwfile"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if p.cred != nil {
		for _, f := range []string{p.Dir, tmp} {
			if err := os.Chown(f, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return err
			}
		}
	}
	cmd := exec.Command(initdb, "-D", p.Dir, "-U", "postgres", "--pwfile="+tmp, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", p.Dir, err, out)
	}
	return nil
}

func dir0(d string) string { return filepath.Dir(d) }

func (p *Postgres) waitReady(ctx context.Context) error {
	if err := waitTCP(ctx, p.proc, p.Addr(), 60*time.Second); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := pgconn.Connect(cctx, p.SuperuserConnString("postgres"))
		cancel()
		if err == nil {
			c.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) || p.proc.exited() {
			return fmt.Errorf("postgres on %s not ready: %w (see %s.log)", p.Addr(), err, p.Dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Exec runs SQL as the superuser on database.
func (p *Postgres) Exec(ctx context.Context, database, sql string) error {
	c, err := pgconn.Connect(ctx, p.SuperuserConnString(database))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql).ReadAll()
	return err
}

// Stop shuts PostgreSQL down (fast shutdown).
func (p *Postgres) Stop() error { return p.proc.stop(syscall.SIGINT, 30*time.Second) }

// Kill stops PostgreSQL at once, as a crash would.
func (p *Postgres) Kill() { p.proc.kill() }

// DataDir returns where PostgreSQL's data should live for a wanted directory. When we run as
// root, PostgreSQL runs as the postgres user, which must be able to reach the directory; if
// a parent of wanted is closed to others (a clone under /root, say), the data goes under
// /var/tmp instead, in a directory named after wanted so that it is found again.
func DataDir(wanted string) (string, error) {
	abs, err := filepath.Abs(wanted)
	if err != nil {
		return "", err
	}
	if os.Geteuid() != 0 || reachableByOthers(filepath.Dir(abs)) {
		return abs, nil
	}
	sum := sha256.Sum256([]byte(abs))
	alt := filepath.Join("/var/tmp", "gatehouse-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(alt, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(alt, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(alt, filepath.Base(abs)), nil
}

// reachableByOthers reports whether every existing directory from / down to dir may be
// traversed by a user that is neither its owner nor in its group.
func reachableByOthers(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// PrependHBA puts lines at the top of pg_hba.conf (first match wins) and reloads.
func (p *Postgres) PrependHBA(ctx context.Context, lines ...string) error {
	path := filepath.Join(p.Dir, "pg_hba.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\n')
	}
	if err := os.WriteFile(path, append(b, old...), 0o600); err != nil {
		return err
	}
	return p.Exec(ctx, "postgres", "SELECT pg_reload_conf()")
}
