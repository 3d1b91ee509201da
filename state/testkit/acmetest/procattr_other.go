//go:build !linux

package acmetest

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}
