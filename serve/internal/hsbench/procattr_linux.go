package main

import "syscall"

func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		// Its own process group: Ctrl-C reaches hsbench only, which then
		// stops the servers itself.
		Setpgid: true,
		// Should hsbench die without cleaning up (kill -9), the kernel
		// kills the server too. (Strictly it fires when the OS thread that
		// started it exits; the Go runtime keeps its threads.) It reaches
		// the process hsbench started only: nginx's worker survives its
		// master, so hsbench logs each peer's process group.
		Pdeathsig: syscall.SIGKILL,
	}
}
