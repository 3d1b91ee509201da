//go:build !linux

package state

// Elsewhere a StatDir stats by path.
const statAtSupported = false

func statAt(int, string) (FileID, bool) { return FileID{}, false }
