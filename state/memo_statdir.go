package state

import (
	"path/filepath"
	"sync"
)

// StatDir stats the files of one directory for a memo's Get, as Memo.Stat
// would (symbolic links followed), but relative to the directory: a pass
// over 100k mappings stats 300k files, and the kernel's walk of each
// absolute path from / is part of every stat's cost, and os.Stat's
// FileInfo an allocation each. The identities are the very ones Stat
// gives, so a memo entry taken either way matches the other.
//
// It holds the directory open until Close: a directory replaced meanwhile
// (a restore swaps the state) is still the old one to it, so a holder
// closes it at the end of each pass (Summaries.Save), and what comes
// after sees the new one. A nil StatDir stats nothing; one that could not open its
// directory or was closed, stat by path. Safe for concurrent use, Close
// included. Whoever opens one closes it: nothing else will.
type StatDir struct {
	path string
	mu   sync.RWMutex // held to read while fd is used, to write to close it
	fd   int          // -1: by path
}

// OpenStatDir opens the directory at p.
func OpenStatDir(p string) *StatDir {
	return &StatDir{path: p, fd: openDirFD(p)}
}

// Stat is the identity of the file rel (clean, relative, slash-separated)
// under the directory.
func (d *StatDir) Stat(rel string) (FileID, bool) {
	if d == nil {
		return FileID{}, false
	}
	d.mu.RLock()
	if d.fd >= 0 {
		id, ok := statAt(d.fd, rel)
		d.mu.RUnlock()
		return id, ok
	}
	d.mu.RUnlock()
	return statID(filepath.Join(d.path, filepath.FromSlash(rel)))
}

// Close releases the directory; the StatDir stats by path after it.
func (d *StatDir) Close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd >= 0 {
		closeDirFD(d.fd)
		d.fd = -1
	}
}

// Keeps reports whether m keeps anything: a memo that keeps nothing (a
// Tx's, a backend's) has no identity to compare with, and its Stat says
// so; a caller that stats by other means asks this first.
func (m *Memo) Keeps() bool { return m.file != "" }
