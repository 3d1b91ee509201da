//go:build !linux

package main

import (
	"os"
	"testing"
)

// openTerminal: the tests open pseudo-terminals on Linux only.
func openTerminal(t *testing.T) *os.File {
	t.Skip("pseudo-terminals are opened on Linux only")
	return nil
}
