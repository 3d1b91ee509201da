//go:build darwin || freebsd

package commands

import "golang.org/x/sys/unix"

const ioctlReadTermios = unix.TIOCGETA
