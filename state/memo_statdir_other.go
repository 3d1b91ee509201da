//go:build !linux

package state

import "path/filepath"

// Elsewhere a StatDir stats by path.
func openDirFD(string) int { return -1 }

func closeDirFD(int) {}

func statAt(int, string) (FileID, bool) { return FileID{}, false }

func identifyAt(_ int, dir, rel string) (FileID, error) {
	return identify(filepath.Join(dir, filepath.FromSlash(rel)))
}
