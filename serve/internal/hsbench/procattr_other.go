//go:build !linux

package main

import "syscall"

func serverProcAttr() *syscall.SysProcAttr {
	// Its own process group: Ctrl-C reaches hsbench only, which then stops
	// the servers itself. Without Linux's Pdeathsig, a server outlives an
	// hsbench killed with -9.
	return &syscall.SysProcAttr{Setpgid: true}
}
