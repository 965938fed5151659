package localssh

import "github.com/gatehouse/gatehouse/services/dev/devproc"

// Descendants lists the processes under pid, for the tests that check Stop and Kill leave
// none behind.
var Descendants = devproc.Descendants

// ProcState is a process's state letter from /proc (error: gone).
func ProcState(pid int) (byte, error) {
	state, _, err := devproc.Stat(pid)
	return state, err
}
