package localdb

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Rsyslog is a local rsyslogd receiving RFC 5424 messages over TCP (TLS when started with a
// certificate) and writing each, parsed, as one JSON line to Out: a real syslog receiver
// for the sink tests.
type Rsyslog struct {
	Port int
	Out  string
	proc *proc
}

// Addr is the receiver's host:port.
func (r *Rsyslog) Addr() string { return "127.0.0.1:" + itoa(r.Port) }

// Stop stops rsyslogd.
func (r *Rsyslog) Stop() error { return r.proc.stop(syscall.SIGTERM, 10*time.Second) }

const rsyslogConf = `global(workDirectory="%[1]s" maxMessageSize="256k"%[3]s)
module(load="imtcp"%[4]s)
input(type="imtcp" port="%[2]d" address="127.0.0.1")
template(name="parsed" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}
action(type="omfile" file="%[1]s/messages.jsonl" template="parsed")
`

// StartRsyslog starts rsyslogd in dir on loopback port (0: a free one); with certFile and
// keyFile it takes TLS only (RFC 5425), presenting that certificate.
func StartRsyslog(ctx context.Context, dir string, port int, certFile, keyFile string) (*Rsyslog, error) {
	bin, err := findBinary("rsyslogd", "/usr/sbin")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install rsyslog rsyslog-gnutls)", err)
	}
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	global, module := "", ""
	if certFile != "" {
		global = fmt.Sprintf(` DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile=%q DefaultNetstreamDriverCertFile=%q DefaultNetstreamDriverKeyFile=%q`,
			certFile, certFile, keyFile)
		module = ` StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"`
	}
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, rsyslogConf, dir, port, global, module), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	p, err := startProc(cmd, filepath.Join(dir, "rsyslogd.log"))
	if err != nil {
		return nil, err
	}
	r := &Rsyslog{Port: port, Out: filepath.Join(dir, "messages.jsonl"), proc: p}
	for {
		c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
		if err == nil {
			c.Close()
			return r, nil
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(p.log)
			return nil, fmt.Errorf("rsyslogd exited (%v): %s", p.err, log)
		case <-ctx.Done():
			_ = r.Stop()
			return nil, fmt.Errorf("rsyslogd did not listen on %s: %w", r.Addr(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
