package main

import (
	"os"
	"testing"
)

// openTerminal is a pseudo-terminal's slave end, for commands that must
// refuse to read from or write to a terminal; both ends close at cleanup.
func openTerminal(t *testing.T) *os.File {
	t.Helper()
	m, s := openPTY(t)
	t.Cleanup(func() { s.Close(); m.Close() })
	return s
}
