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

func viaParent(d dirRef, name string) dirRef { return filepath.Join(d, name) }

func closeDir(dirRef) {}

// listDir lists d, unsorted.
func listDir(d dirRef, _ string) ([]dirent, error) {
	des, err := os.ReadDir(d)
	if err != nil {
		return nil, err
	}
	out := make([]dirent, len(des))
	for i, de := range des {
		out[i].name = de.Name()
		switch t := de.Type(); {
		case t.IsDir():
			out[i].typ = typeDir
		case t&fs.ModeSymlink != 0:
			out[i].typ = typeSymlink
		default:
			out[i].typ = typeOther
		}
	}
	return out, nil
}

// statAt is the walk's view of entry de of d; one that cannot be stat'ed
// was removed while we looked, and is not classified.
func statAt(d dirRef, de dirent) walkEntry {
	e := walkEntry{name: de.name, dir: de.typ == typeDir}
	if de.typ == typeSymlink {
		return e
	}
	fi, err := os.Lstat(filepath.Join(d, de.name))
	if err != nil {
		return e
	}
	e.mode, e.stat = fi.Mode(), fi.Mode()&fs.ModeSymlink == 0
	e.id, _ = state.FileIDOf(fi)
	if de.typ == typeUnknown {
		e.dir = fi.IsDir()
	}
	return e
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
