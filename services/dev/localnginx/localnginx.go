// Package localnginx starts Debian's nginx (/usr/sbin/nginx) as a child process on a free
// loopback port, with its own configuration, PID file, temporary files and logs in a given
// directory: either a plain upstream serving the files of a directory, or a plain reverse
// proxy in front of a URL (keep-alive connections to it). It is the second upstream of the
// HTTP proxy's tests and the reverse proxy `gatehouse bench http` compares Gatehouse with.
//
// nginx runs in the foreground (daemon off) as the current user: when that is root, its
// workers stay root too, so that they can read a test's private temporary directory.
package localnginx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/services/dev/devproc"
)

// Path is where Debian's nginx packages install the server.
const Path = "/usr/sbin/nginx"

// ErrNotInstalled says nginx is missing.
var ErrNotInstalled = errors.New("nginx not installed")

// Config says what nginx serves: the files of Root, or a reverse proxy to ProxyTo (one of
// the two).
type Config struct {
	// Root is a directory whose files are served as they are (ETag, Last-Modified,
	// Content-Length, Range and conditional requests: nginx's static file handling).
	Root string
	// ProxyTo is the http URL (scheme, host and port) requests are forwarded to, over
	// HTTP/1.1 with a pool of kept-alive connections.
	ProxyTo string
	// NoBuffering streams the upstream's responses as they come (proxy_buffering off)
	// instead of reading them ahead into nginx's buffers.
	NoBuffering bool
	// Workers is worker_processes (0: one per CPU, nginx's auto).
	Workers int
	// NoAccessLog turns the access log off (it is on, buffered, in the directory).
	NoAccessLog bool
}

// Nginx is a running nginx. Its fields are set by Start and only read afterwards.
type Nginx struct {
	Dir  string // configuration, PID file, temporary files and logs
	Port int    // on 127.0.0.1
	// URL is http://127.0.0.1:Port.
	URL       string
	Conf      string
	ErrorLog  string
	AccessLog string

	ready string // what the readiness location answers: this instance's own mark
	proc  *devproc.Proc
}

// Addr is the server's host:port.
func (n *Nginx) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// Pid is the nginx master process's ID.
func (n *Nginx) Pid() int { return n.proc.Pid() }

// readyPath answers the readiness probe in both modes, before any proxying.
const readyPath = "/.localnginx-ready"

// Start starts nginx in dir (created if missing) on a free loopback port and returns once it
// answers its readiness probe with this instance's mark.
func Start(ctx context.Context, dir string, cfg Config) (*Nginx, error) {
	if st, err := os.Stat(Path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%w: no %s (deploy/install-deps.sh test, or apt-get install nginx-light)", ErrNotInstalled, Path)
	}
	if (cfg.Root == "") == (cfg.ProxyTo == "") {
		return nil, errors.New("localnginx: set one of Root and ProxyTo")
	}
	if cfg.ProxyTo != "" {
		u, err := url.Parse(cfg.ProxyTo)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("localnginx: ProxyTo %q is not an http://host:port URL", cfg.ProxyTo)
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Root != "" {
		if cfg.Root, err = filepath.Abs(cfg.Root); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	mark := make([]byte, 12)
	if _, err := rand.Read(mark); err != nil {
		return nil, err
	}
	n := &Nginx{Dir: dir, Conf: filepath.Join(dir, "nginx.conf"), ErrorLog: filepath.Join(dir, "error.log"),
		AccessLog: filepath.Join(dir, "access.log"), ready: hex.EncodeToString(mark)}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The free port may be taken before nginx binds it; then try another.
	for attempt := 0; ; attempt++ {
		err := n.start(ctx, cfg)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 2 {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port taken")

func (n *Nginx) start(ctx context.Context, cfg Config) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n.URL = "http://" + n.Addr()
	if err := os.WriteFile(n.Conf, []byte(n.config(cfg)), 0o600); err != nil {
		return err
	}
	logStart := fileSize(n.ErrorLog)
	// -e: the error log before the configuration is read (Debian's default is stderr);
	// -p: relative paths are the directory's, not /usr/share/nginx.
	p, err := devproc.Start("nginx", Path, []string{"-e", n.ErrorLog, "-p", n.Dir + "/", "-c", n.Conf}, filepath.Join(n.Dir, "stderr.log"))
	if err != nil {
		return err
	}
	n.proc = p
	if err := n.waitReady(ctx); err != nil {
		_ = p.StopGroup(syscall.SIGKILL, 10*time.Second)
		log := readFrom(n.ErrorLog, logStart)
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %d", errPortTaken, n.Port)
		}
		return fmt.Errorf("%w; nginx's error log (%s):\n%s", err, n.ErrorLog, log)
	}
	return nil
}

func (n *Nginx) config(cfg Config) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Written by Gatehouse's test fixture (services/dev/localnginx).")
	w("daemon off;")
	w("master_process on;")
	if os.Geteuid() == 0 {
		// Workers would otherwise switch to nobody and lose the directory.
		w("user root;")
	}
	workers := "auto"
	if cfg.Workers > 0 {
		workers = strconv.Itoa(cfg.Workers)
	}
	w("worker_processes %s;", workers)
	w("pid %s/nginx.pid;", n.Dir)
	w("error_log %s notice;", n.ErrorLog)
	w("events { worker_connections 4096; }")
	w("http {")
	w("  types { application/json json; text/plain txt; text/html html; text/csv csv; }")
	w("  default_type application/octet-stream;")
	if cfg.NoAccessLog {
		w("  access_log off;")
	} else {
		w("  access_log %s combined buffer=64k flush=1s;", n.AccessLog)
	}
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("  %s_temp_path %s/tmp/%s;", t, n.Dir, t)
	}
	w("  sendfile on;")
	w("  tcp_nopush on;")
	// Benchmarks keep their connections for millions of requests (nginx's default closes
	// one after 1000).
	w("  keepalive_requests 10000000;")
	w("  keepalive_timeout 75s;")
	if cfg.ProxyTo != "" {
		u, _ := url.Parse(cfg.ProxyTo)
		w("  upstream backend {")
		w("    server %s;", hostPort(u))
		w("    keepalive 256;")
		w("    keepalive_requests 10000000;")
		w("  }")
	}
	w("  server {")
	w("    listen 127.0.0.1:%d;", n.Port)
	w("    server_name localhost;")
	w("    location = %s { default_type text/plain; return 200 %q; }", readyPath, n.ready)
	if cfg.Root != "" {
		w("    root %s;", cfg.Root)
		w("    location / { }")
	} else {
		w("    location / {")
		w("      proxy_pass http://backend;")
		w("      proxy_http_version 1.1;")
		w(`      proxy_set_header Connection "";`)
		// The upstream sees its own address as Host, as a client calling it would send.
		u, _ := url.Parse(cfg.ProxyTo)
		w("      proxy_set_header Host %s;", u.Host)
		if cfg.NoBuffering {
			w("      proxy_buffering off;")
		}
		w("    }")
	}
	w("  }")
	w("}")
	return b.String()
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// waitReady polls the readiness location until it answers with this instance's mark.
func (n *Nginx) waitReady(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if n.proc.Exited() {
			return fmt.Errorf("nginx exited: %v", n.proc.Err)
		}
		resp, err := c.Get(n.URL + readyPath)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == n.ready {
				return nil
			}
			err = fmt.Errorf("%s answered %d %q: not this nginx", n.Addr(), resp.StatusCode, body)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("nginx not ready on %s: %v", n.Addr(), last)
		case <-tick.C:
		}
	}
}

// Stop stops nginx quickly (SIGTERM: the master stops its workers and exits) and waits;
// after 10 s the whole process group is killed. No process of the fixture outlives Stop.
func (n *Nginx) Stop() error {
	if n == nil || n.proc == nil {
		return nil
	}
	return n.proc.StopGroup(syscall.SIGTERM, 10*time.Second)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func readFrom(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	return string(b)
}
