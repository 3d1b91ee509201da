//go:build !linux

package state

// exchange is Linux-only (renameat2); elsewhere swap renames twice.
func exchange(string, string) error { return errNoExchange }
