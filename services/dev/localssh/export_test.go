package localssh

// Descendants lists the processes under pid, for the tests that check Stop and Kill leave
// none behind.
var Descendants = descendants

// ProcState is a process's state letter from /proc (error: gone).
func ProcState(pid int) (byte, error) {
	state, _, err := procStat(pid)
	return state, err
}
