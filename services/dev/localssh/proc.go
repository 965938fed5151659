package localssh

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is the listening sshd, our child.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited (err says how)
	err  error
}

func startProc(bin string, args []string, logPath string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// The listener dies with us even if we are killed (its sessions then live on until
	// their clients, which were in this process too, are gone).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopTree ends the listener and everything under it. sshd puts each connection in a
// session of its own and a listener's exit leaves connections running, so signalling the
// process group or the listener alone would leave sessions behind. Instead the listener is
// stopped (no new connections), then its descendants (no new processes), then the
// descendants are killed and the listener gets sig.
func (p *proc) stopTree(sig syscall.Signal, timeout time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	frozen := freezeDescendants(pid, timeout)
	for _, d := range frozen {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	// A killed process runs until its exit completes; only then is it really gone.
	waitDead(frozen, timeout)
	_ = syscall.Kill(pid, sig)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("sshd did not stop within %s; killed", timeout)
	}
}

// freezeDescendants sends SIGSTOP to every descendant of root until all of them are
// stopped, catching those forked meanwhile, and returns them.
func freezeDescendants(root int, timeout time.Duration) []int {
	var all []int
	seen := map[int]bool{}
	deadline := time.Now().Add(timeout)
	for {
		fresh := false
		for _, d := range descendants(root) {
			if !seen[d] {
				seen[d], fresh = true, true
				all = append(all, d)
				_ = syscall.Kill(d, syscall.SIGSTOP)
			}
		}
		if (!fresh && allStopped(all)) || time.Now().After(deadline) {
			return all
		}
		// A signal is delivered asynchronously; look again shortly.
		time.Sleep(time.Millisecond)
	}
}

// waitDead waits until each of pids has exited (a zombie or gone).
func waitDead(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if state, _, err := procStat(pid); err != nil || state == 'Z' || state == 'X' {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func allStopped(pids []int) bool {
	for _, pid := range pids {
		state, _, err := procStat(pid)
		if err != nil {
			continue // gone
		}
		if state != 'T' && state != 't' && state != 'Z' && state != 'X' {
			return false
		}
	}
	return true
}

// descendants lists the processes under root, from /proc.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(pid); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procStat reads a process's state and parent from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it start past ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 2 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}
