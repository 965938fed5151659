// Package devproc runs the servers the test fixtures start (sshd, kube-apiserver, etcd,
// nginx): a child in a process group of its own that dies with the test process, its output
// in a log file, and the ways to stop it and everything it started.
package devproc

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a server, our child, in a process group of its own.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Done is closed when the process has exited (Err says how).
	Done chan struct{}
	Err  error
}

// Start starts bin with args, its output appended to logPath. It dies with the test
// process even if that is killed.
func Start(name, bin string, args []string, logPath string) (*Proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Done: make(chan struct{})}
	go func() { p.Err = cmd.Wait(); lf.Close(); close(p.Done) }()
	return p, nil
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// StopTree ends the process and everything under it, for a server whose children outlive
// it in sessions of their own (sshd's connections): the process is stopped (no new
// children), then its descendants (no new processes), then the descendants are killed and
// the process gets sig; past timeout its group is killed.
func (p *Proc) StopTree(sig syscall.Signal, timeout time.Duration) error {
	if p == nil || p.Exited() {
		return nil
	}
	pid := p.Pid()
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	frozen := freezeDescendants(pid, timeout)
	for _, d := range frozen {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	// A killed process runs until its exit completes; only then is it really gone.
	WaitGone(frozen, timeout)
	_ = syscall.Kill(pid, sig)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	select {
	case <-p.Done:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.Done
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, timeout)
	}
}

// Kill ends the process, its process group and every process under it, frozen first so
// that nothing forks past the kill, and returns once all of it is gone (for servers that
// keep nothing worth a graceful stop).
func (p *Proc) Kill() {
	if p == nil {
		return
	}
	pid := p.Pid()
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	tree := freezeDescendants(pid, 10*time.Second)
	for _, d := range tree {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-p.Done
	WaitGone(tree, 10*time.Second)
}

// StopGroup signals the process and waits for it (past timeout it is killed); its group is
// killed after it, so that a worker it lost track of goes too (nginx's workers).
func (p *Proc) StopGroup(sig syscall.Signal, timeout time.Duration) error {
	pid := p.Pid()
	if p.Exited() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return nil
	}
	_ = syscall.Kill(pid, sig)
	var err error
	select {
	case <-p.Done:
	case <-time.After(timeout):
		err = fmt.Errorf("%s did not stop within %s; killed", p.Name, timeout)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.Done
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return err
}

// freezeDescendants sends SIGSTOP to every descendant of root until all of them are
// stopped, catching those forked meanwhile, and returns them.
func freezeDescendants(root int, timeout time.Duration) []int {
	var all []int
	seen := map[int]bool{}
	deadline := time.Now().Add(timeout)
	for {
		fresh := false
		for _, d := range Descendants(root) {
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

// WaitGone waits until each of pids has exited (a zombie, reaped or gone), timeout at most.
func WaitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if state, _, err := Stat(pid); err != nil || state == 'Z' || state == 'X' {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func allStopped(pids []int) bool {
	for _, pid := range pids {
		state, _, err := Stat(pid)
		if err != nil {
			continue // gone
		}
		if state != 'T' && state != 't' && state != 'Z' && state != 'X' {
			return false
		}
	}
	return true
}

// Descendants lists the processes under root, from /proc.
func Descendants(root int) []int {
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
		if _, ppid, err := Stat(pid); err == nil {
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

// Stat reads a process's state letter and parent from /proc/PID/stat.
func Stat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it start past ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}
