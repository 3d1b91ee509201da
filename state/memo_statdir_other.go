//go:build !linux

package state

// Elsewhere a StatDir stats by path.
func openDirFD(string) int { return -1 }

func closeDirFD(int) {}

func statAt(int, string) (FileID, bool) { return FileID{}, false }
