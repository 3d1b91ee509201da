//go:build !linux

package doctor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/p2pstream/p2ptls/state"
)

// Elsewhere the walk reads directories by path, as filepath.WalkDir does.

// dirRef is a directory's path.
type dirRef = string

func openDir(p string) (dirRef, error) { return p, nil }

func openSubdir(_ dirRef, _ string, p string) (dirRef, error) { return p, nil }

func closeDir(dirRef) {}

// readDir lists d and lstats each entry but symlinks, unsorted.
func readDir(d dirRef, _ string) ([]walkEntry, error) {
	des, err := os.ReadDir(d)
	if err != nil {
		return nil, err
	}
	out := make([]walkEntry, 0, len(des))
	for _, de := range des {
		e := walkEntry{name: de.Name(), dir: de.IsDir()}
		if de.Type()&fs.ModeSymlink == 0 {
			if fi, err := de.Info(); err == nil {
				e.mode, e.stat = fi.Mode(), true
				e.id, _ = state.FileIDOf(fi)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// lstatEntry is the walk's view of the file at p.
func lstatEntry(p string) (walkEntry, error) {
	fi, err := os.Lstat(filepath.Clean(p))
	if err != nil {
		return walkEntry{}, err
	}
	e := walkEntry{name: fi.Name(), mode: fi.Mode(), stat: fi.Mode()&fs.ModeSymlink == 0, dir: fi.IsDir()}
	e.id, _ = state.FileIDOf(fi)
	return e, nil
}

// isGone reports an error of something removed while the walk looked.
func isGone(err error) bool { return errors.Is(err, fs.ErrNotExist) }
