//go:build !linux

package backup

// exchange is Linux-only (renameat2); elsewhere swap renames twice.
func exchange(string, string) error { return errNoExchange }
