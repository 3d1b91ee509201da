//go:build linux

package doctor

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/p2pstream/p2ptls/state"
)

// On Linux the walk reads each directory through its own descriptor
// (getdents64) and stats each entry relative to it (fstatat): no path is
// resolved from the root for each of the state's 500k entries, and no
// os.DirEntry or os.FileInfo is made for them.

// dirRef is an open directory.
type dirRef = int

func openDir(p string) (dirRef, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// openSubdir opens the entry name of d, a directory when it was stat'ed;
// one replaced by a symlink since is not followed (it is gone, for the
// walk, as a removed one is).
func openSubdir(d dirRef, name, p string) (dirRef, error) {
	for {
		fd, err := unix.Openat(d, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			err = unix.ENOENT
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
}

func closeDir(d dirRef) { _ = unix.Close(d) }

// direntBufs are getdents64 buffers, one per worker at a time.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readDir lists d and stats each entry but symlinks, unsorted.
func readDir(d dirRef, p string) ([]walkEntry, error) {
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	var out []walkEntry
	for {
		n, err := unix.Getdents(d, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, &fs.PathError{Op: "readdirent", Path: p, Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		for b := buf[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < 19 || reclen > len(b) {
				return out, &fs.PathError{Op: "readdirent", Path: p, Err: unix.EIO}
			}
			typ, nameb := b[18], b[19:reclen]
			b = b[reclen:]
			if i := indexZero(nameb); i >= 0 {
				nameb = nameb[:i]
			}
			if len(nameb) == 0 || string(nameb) == "." || string(nameb) == ".." {
				continue
			}
			e := walkEntry{name: string(nameb), dir: typ == unix.DT_DIR}
			if typ == unix.DT_LNK {
				out = append(out, e)
				continue
			}
			var st unix.Stat_t
			for {
				err = unix.Fstatat(d, e.name, &st, unix.AT_SYMLINK_NOFOLLOW)
				if err != unix.EINTR {
					break
				}
			}
			// An entry that cannot be stat'ed was removed while we looked
			// (or cannot be searched): not classified, as WalkDir's
			// DirEntry.Info fails for it.
			if err == nil {
				e.mode, e.id = modeOf(&st), idOf(&st)
				e.stat = e.mode&fs.ModeSymlink == 0
				if typ == unix.DT_UNKNOWN {
					e.dir = e.mode.IsDir()
				}
			}
			out = append(out, e)
		}
	}
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// modeOf is os.FileMode's reading of st_mode: the type and permission
// bits the walk looks at.
func modeOf(st *unix.Stat_t) fs.FileMode {
	m := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFREG:
	default:
		m |= fs.ModeIrregular // a FIFO, socket or device: not IsRegular
	}
	return m
}

// idOf is the state.FileID of st, as state.FileIDOf makes it from an
// lstat.
func idOf(st *unix.Stat_t) state.FileID {
	return state.FileID{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

// lstatEntry is the walk's view of the file at p.
func lstatEntry(p string) (walkEntry, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return walkEntry{}, err
	}
	e := walkEntry{name: fi.Name(), mode: fi.Mode(), stat: fi.Mode()&fs.ModeSymlink == 0, dir: fi.IsDir()}
	e.id, _ = state.FileIDOf(fi)
	return e, nil
}

// isGone reports an error of something removed while the walk looked.
func isGone(err error) bool { return errors.Is(err, fs.ErrNotExist) }
