package commands

import (
	"os"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal (an interactive run). A
// character device is not enough: cron and systemd give commands
// /dev/null as standard input, and taking that for a terminal made
// "cert renew" skip its random sleep under cron. A terminal is what
// answers the terminal-attributes ioctl.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlReadTermios)
	return err == nil
}
