package acmetest

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the child when the test process dies, so
// that an interrupted test run leaves no pebble behind.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
