//go:build !linux

package state

// exchange is Linux-only (renameat2); elsewhere swap renames twice.
func exchange(string, string) error { return errNoExchange }

// mountID is Linux-only (statx); elsewhere a mount point is told by its
// device alone.
func mountID(string) (uint64, bool) { return 0, false }
