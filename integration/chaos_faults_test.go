package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/schemas"
)

// fault is one fault of the suite: inject it, keep it for down, remove it; check says
// what must hold of the load while it lasted (beyond the invariants every fault shares).
type fault struct {
	name string
	skip string // why the fault does not run here
	down time.Duration
	// effective, when set, keeps the fault on past down until it has bitten: a refusal
	// (the load has a failure since the injection), within a minute.
	effective bool
	// goOn, when set, keeps the fault on past down until the load has gone on through it:
	// a strict statement and one that needed a decision, both sent since the injection,
	// were answered (within a minute; a NATS node of three lost must stop nothing).
	goOn bool
	// ssh: the fault reaches the SSH clients' path (proxy-ssh, the policy service, NATS),
	// so their recovery is measured after it too (an SSH command costs the host about 0.4 s,
	// several under the load: measured after every fault it would double the run).
	ssh    bool
	inject func()
	remove func() // returns once the component is back (for a kill: started and ready)
	check  func(w windowCounts, r *faultResult)
}

// faultResult is a fault's outcome.
type faultResult struct {
	name     string
	injected time.Time
	removed  time.Time
	down     time.Duration
	ready    time.Duration // from the fault's removal to the component ready again
	recovery time.Duration // from the fault's removal to every SQL and HTTP client answered again
	// sshRecovery: to every SSH client answered again (a command costs sshd about 0.4 s)
	sshRecovery time.Duration
	caughtUp    time.Duration // from recovery to ClickHouse holding every client's last answered statement
	wentOn      time.Duration // goOn: from the injection to the load answered again through the fault
	during      windowCounts
	notes       []string
	errors      []string // what the clients got while it lasted, most frequent first
	outcome     string
	failures    []string
}

func (r *faultResult) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *faultResult) summary() string {
	s := fmt.Sprintf("down %s, ready %s, load recovered %s (SSH %s), trail caught up %s; during: answered %d buffered / %d strict, refused %d buffered / %d strict, %d connections failed",
		r.down.Round(time.Millisecond), r.ready.Round(time.Millisecond), r.recovery.Round(time.Millisecond), r.sshRecovery.Round(time.Millisecond), r.caughtUp.Round(time.Millisecond),
		r.during.okBuffered, r.during.okStrict, r.during.failBuffered, r.during.failStrict, r.during.connectFailed)
	if len(r.errors) > 0 {
		s += "; errors: " + strings.Join(r.errors[:min(3, len(r.errors))], " | ")
	}
	if r.wentOn > 0 {
		s += fmt.Sprintf("; went on through it after %s", r.wentOn.Round(time.Millisecond))
	}
	if len(r.notes) > 0 {
		s += "; " + strings.Join(r.notes, "; ")
	}
	if len(r.failures) > 0 {
		s += "; FAILED: " + strings.Join(r.failures, "; ")
	}
	return s
}

// chaosFaults are the faults, in the order they run.
func chaosFaults(c *chaosCluster, o chaosOptions) []fault {
	var out []fault
	for _, target := range []string{"proxy-postgres", "proxy-http", "proxy-ssh", "policy", "approvals", "notifier", "ingest", "query", "sinks"} {
		f := fault{name: "kill -9 " + target, down: o.down, ssh: target == "proxy-ssh" || target == "policy",
			inject: func() { c.kill(target) },
			remove: func() { c.start(target) },
		}
		switch target {
		case "policy":
			f.check = func(w windowCounts, r *faultResult) {
				if w.okInsideUncached > 0 {
					r.fail("fail closed: %d statements that needed a decision were answered while no policy service ran", w.okInsideUncached)
				}
			}
		}
		out = append(out, f)
	}
	for _, f := range natsFaults(c, o) {
		f.ssh = true
		out = append(out, f)
	}
	out = append(out, fault{name: "clickhouse down", down: o.chDown,
		inject: func() { c.ch.Kill() },
		remove: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := c.ch.Restart(ctx); err != nil {
				c.t.Errorf("restart clickhouse: %v", err)
			}
		},
	})
	// The postgres proxy's statements (proxy-http and proxy-ssh keep their own connections
	// to NATS).
	failClosed := func(w windowCounts, r *faultResult) {
		if n := w.okInsideUncached - w.okInsideUncachedOther; n > 0 {
			r.fail("fail closed: %d statements that needed a decision were answered while the proxy could not reach NATS", n)
		}
		if n := w.okInsideStrict - w.okInsideStrictOther; n > 0 {
			r.fail("fail closed: %d strict statements were answered while the proxy could not reach NATS", n)
		}
	}
	proxy := c.nats.proxyLinks()
	out = append(out, fault{name: "proxy cut off from NATS (reset)", down: o.cut, inject: proxy.Cut, remove: proxy.Restore, check: failClosed})
	out = append(out, fault{name: "proxy partitioned from NATS (packets dropped)", down: o.cut, inject: proxy.Stall, remove: proxy.Restore, check: failClosed})
	for _, s := range []struct{ name, mode string }{{"siem-dead", "dead"}, {"siem-slow", "slow"}} {
		rx := c.sinks[s.name]
		var from, to time.Time
		out = append(out, fault{name: s.mode + " SIEM sink", down: o.sinkFault,
			inject: func() { from = time.Now(); rx.setMode(s.mode) },
			remove: func() { to = time.Now(); rx.setMode("ok") },
			check: func(w windowCounts, r *faultResult) {
				// The rest keeps working: the load is answered, and the healthy sink
				// receives what was answered while the other was down.
				if w.okBuffered+w.okStrict == 0 {
					r.fail("no statement was answered while a sink was %s", s.mode)
				}
				if !c.sinks["siem-good"].tookBetween(from, to) {
					r.fail("the healthy sink received nothing while %s was %s", s.name, s.mode)
				}
			},
		})
	}
	// The spool's journal allocates its segments whole: a full disk bites when the next
	// one is needed, so the fault lasts until something is refused.
	disk := fault{name: "disk full on the proxy's spool", down: o.diskFull, effective: true}
	switch {
	case !c.spoolFS:
		disk.skip = "mount -t tmpfs was refused (not root?)"
	default:
		filler := filepath.Join(c.spoolDir, "chaos-filler")
		disk.inject = func() { fillDisk(c.t, filler) }
		disk.remove = func() { os.Remove(filler) }
		disk.check = func(w windowCounts, r *faultResult) {
			if w.failBuffered+w.failStrict == 0 {
				r.fail("no statement was refused while the spool's disk was full")
			}
		}
	}
	out = append(out, disk)
	return out
}

// runFault injects f under the load, removes it, and measures the recovery.
func runFault(t *testing.T, c *chaosCluster, load *chaosLoad, o chaosOptions, f fault) faultResult {
	r := faultResult{name: f.name, down: f.down}
	injected := time.Now()
	r.injected = injected
	f.inject()
	// In place: what the load does from now on is under the fault (inject may have taken a
	// while, e.g. asking JetStream which node to kill).
	bitten := time.Now()
	time.Sleep(f.down) // the fault's intended duration
	if f.effective {
		if bit, ok := waitFor(time.Minute, func() bool { return load.failedSince(injected) }); ok {
			r.down += bit
		} else {
			r.fail("nothing was refused within %s of the fault", f.down+time.Minute)
		}
	}
	if f.goOn {
		var ok bool
		if r.wentOn, ok = load.wentOnSince(bitten, time.Minute); !ok {
			r.fail("the load did not go on through the fault: no strict statement and one that needed a decision, both sent after it began, answered within a minute; errors: %v", load.errorsSince(injected)[:min(5, len(load.errorsSince(injected)))])
		}
		r.down = max(r.down, time.Since(injected))
	}
	removed := time.Now()
	r.removed = removed
	f.remove()
	r.ready = time.Since(removed)
	// An SSH command costs the host about 0.4 s (sshd's session set-up, direct or through
	// the gateway) and several under the load: the SSH clients' recovery is measured on its
	// own, not to hide the others' behind it.
	ssh := func(lc *loadClient) bool { return lc.kind == "ssh" }
	var ok bool
	r.recovery, ok = load.recoveredAfter(removed, o.recoverIn, func(lc *loadClient) bool { return !ssh(lc) })
	if ok && f.ssh {
		var sshOK bool
		if r.sshRecovery, sshOK = load.recoveredAfter(removed, o.recoverIn, ssh); !sshOK {
			r.fail("the SSH clients did not recover within %s of the fault's removal: %v", o.recoverIn, load.errorsSince(removed))
		}
	}
	r.during = load.counts(injected, removed)
	r.errors = load.errorsBetween(injected, removed.Add(r.recovery))
	if !ok {
		errs := load.errorsSince(removed)
		r.fail("the load did not recover within %s of the fault's removal; %d kinds of error since, the most frequent: %v", o.recoverIn, len(errs), errs[:min(5, len(errs))])
		r.outcome = "load did not recover"
		return r
	}
	if f.goOn {
		until := removed.Add(r.recovery)
		r.notes = append(r.notes, fmt.Sprintf("longest wait for an answer from the fault to the recovery: strict %s, needing a decision %s",
			load.longestGap(injected, until, true).Round(10*time.Millisecond), load.longestGap(injected, until, false).Round(10*time.Millisecond)))
	}
	if f.check != nil {
		f.check(r.during, &r)
	}
	r.caughtUp, ok = c.trailCaughtUp(load.lastAnswered(), 3*time.Minute)
	if !ok {
		r.fail("ClickHouse did not get the clients' last answered statements within 3m")
	}
	r.outcome = "ok"
	if len(r.failures) > 0 {
		r.outcome = "FAILED"
	}
	return r
}

// trailCaughtUp waits until ClickHouse holds the db.query of each client's statement last
// (by client), and returns how long that took.
func (c *chaosCluster) trailCaughtUp(last map[int]int, within time.Duration) (time.Duration, bool) {
	ctx := context.Background()
	return waitFor(within, func() bool {
		for k, i := range last {
			if i < 0 {
				continue
			}
			if c.chCount(ctx, "SELECT count() FROM gatehouse.events WHERE type IN (?, ?, ?) AND position(payload, ?) > 0",
				schemas.TypeDbQuery, schemas.TypeHttpRequest, schemas.TypeSshRequest, fmt.Sprintf("chaos_%d_%d_", k, i)) < 1 {
				return false
			}
		}
		return true
	})
}

// fillDisk writes path until its file system has no room left.
func fillDisk(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("disk full: %v", err)
		return
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("disk full: %v", err)
			}
			// What is left is smaller than a chunk: take it too.
			for n := len(buf) / 2; n > 0; n /= 2 {
				for {
					if _, err := f.Write(buf[:n]); err != nil {
						break
					}
				}
			}
			return
		}
	}
}

// sinkReceiver is a SIEM's HTTP endpoint whose health the test sets: ok takes every
// batch, dead never answers (until it is ok again, then refuses that batch), slow answers
// each batch after two seconds.
type sinkReceiver struct {
	srv  *httptest.Server
	mode atomic.Value // string

	mu      sync.Mutex
	markers map[string]bool // client-statement of every db.query received
	events  int
	takes   []time.Time // when each batch was taken
	refused []string    // why batches were refused (not the dead mode's)
	revived chan struct{}
}

func newSinkReceiver(t *testing.T) *sinkReceiver {
	s := &sinkReceiver{markers: map[string]bool{}, revived: make(chan struct{})}
	s.mode.Store("ok")
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.setMode("ok")
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

func (s *sinkReceiver) URL() string { return s.srv.URL + "/events" }

func (s *sinkReceiver) setMode(m string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode.Load() == "dead" && m != "dead" {
		close(s.revived)
		s.revived = make(chan struct{})
	}
	s.mode.Store(m)
}

func (s *sinkReceiver) serve(w http.ResponseWriter, r *http.Request) {
	switch s.mode.Load() {
	case "dead":
		s.mu.Lock()
		revived := s.revived
		s.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-revived:
		}
		http.Error(w, "dead", http.StatusServiceUnavailable)
		return
	case "slow":
		time.Sleep(2 * time.Second) // the slow SIEM's answer time
	}
	type ev struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var markers []string
	n := 0
	for sc.Scan() {
		var e ev
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			s.reject(fmt.Sprintf("bad event: %v", err))
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		n++
		if e.Type == schemas.TypeDbQuery || e.Type == schemas.TypeHttpRequest || e.Type == schemas.TypeSshRequest {
			if m := chaosMarker.FindStringSubmatch(string(e.Payload)); m != nil {
				markers = append(markers, m[1]+"-"+m[2])
			}
		}
	}
	if err := sc.Err(); err != nil {
		s.reject(fmt.Sprintf("read: %v", err))
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, m := range markers {
		s.markers[m] = true
	}
	s.events += n
	s.takes = append(s.takes, time.Now())
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// tookBetween says whether a batch was taken in [from, to).
func (s *sinkReceiver) tookBetween(from, to time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.takes {
		if !at.Before(from) && at.Before(to) {
			return true
		}
	}
	return false
}

// has says whether the sink received client k's statement i.
func (s *sinkReceiver) has(k, i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.markers[fmt.Sprintf("%d-%d", k, i)]
}

// reject records why a batch was refused.
func (s *sinkReceiver) reject(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refused) < 10 {
		s.refused = append(s.refused, why)
	}
}

// refusals are the reasons batches were refused.
func (s *sinkReceiver) refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.refused...)
}
