package state

import (
	"os"
	"path/filepath"
	"syscall"
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
// after sees the new one. A nil StatDir, and one that could not open its
// directory or was closed, stat by path. Safe for concurrent use, Close
// included (the file's own reference counting keeps the descriptor open
// while a stat uses it).
type StatDir struct {
	path string
	raw  syscall.RawConn // nil: by path
	f    *os.File
}

// OpenStatDir opens the directory at the absolute path p.
func OpenStatDir(p string) *StatDir {
	d := &StatDir{path: p}
	if !statAtSupported {
		return d
	}
	f, err := os.Open(p)
	if err != nil {
		return d
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return d
	}
	d.f, d.raw = f, raw
	return d
}

// Stat is the identity of the file rel (clean, relative, slash-separated)
// under the directory.
func (d *StatDir) Stat(rel string) (FileID, bool) {
	if d != nil && d.raw != nil {
		var id FileID
		var ok bool
		if d.raw.Control(func(fd uintptr) { id, ok = statAt(int(fd), rel) }) == nil {
			return id, ok
		}
		// Closed meanwhile: by path.
	}
	return statID(filepath.Join(d.path, filepath.FromSlash(rel)))
}

// Close releases the directory; the StatDir stats by path after it.
func (d *StatDir) Close() {
	if d != nil && d.f != nil {
		d.f.Close()
	}
}

// Keeps reports whether m keeps anything: a memo that keeps nothing (a
// Tx's, a backend's) has no identity to compare with, and its Stat says
// so; a caller that stats by other means asks this first.
func (m *Memo) Keeps() bool { return m.file != "" }
