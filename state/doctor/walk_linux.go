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

// On Linux the walk reads each directory through a descriptor
// (getdents64) and stats each entry relative to it (fstatat): no path is
// resolved from the root for each of the state's 500k entries, and no
// os.DirEntry or os.FileInfo is made for them.

// dirRef is a directory: sub (ending in a slash) below the open directory
// fd, or fd itself when sub is "". own says closing it closes fd.
type dirRef struct {
	fd  int
	sub string
	own bool
}

func openDir(p string) (dirRef, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return dirRef{}, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return dirRef{fd: fd, own: true}, nil
}

// openSubdir opens the entry name of d (at path p), a directory when it
// was stat'ed; one replaced by a symlink since is not followed (it is
// gone, for the walk, as a removed one is).
func openSubdir(d dirRef, name, p string) (dirRef, error) {
	for {
		fd, err := unix.Openat(d.fd, d.sub+name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			err = unix.ENOENT
		}
		if err != nil {
			return dirRef{}, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return dirRef{fd: fd, own: true}, nil
	}
}

// viaParent is the subdirectory name of d, not opened: for one whose
// entries are known, only stat'ed.
func viaParent(d dirRef, name string) dirRef { return dirRef{fd: d.fd, sub: d.sub + name + "/"} }

func closeDir(d dirRef) {
	if d.own {
		_ = unix.Close(d.fd)
	}
}

// direntBufs are getdents64 buffers, one per worker at a time.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// listDir lists d (opened, at path p), unsorted.
func listDir(d dirRef, p string) ([]dirent, error) {
	if d.sub != "" {
		return nil, &fs.PathError{Op: "readdirent", Path: p, Err: unix.EBADF} // never: only listed directories are not opened
	}
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	var out []dirent
	for {
		n, err := unix.Getdents(d.fd, buf)
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
			typ, name := b[18], b[19:reclen]
			b = b[reclen:]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			de := dirent{name: string(name)}
			switch typ {
			case unix.DT_DIR:
				de.typ = typeDir
			case unix.DT_LNK:
				de.typ = typeSymlink
			case unix.DT_UNKNOWN:
			default:
				de.typ = typeOther
			}
			out = append(out, de)
		}
	}
}

// statAt is the walk's view of entry de of d. An entry that cannot be
// stat'ed was removed while we looked (or cannot be searched): it is not
// classified, as WalkDir's DirEntry.Info fails for it.
func statAt(d dirRef, de dirent) walkEntry {
	e := walkEntry{name: de.name, dir: de.typ == typeDir}
	if de.typ == typeSymlink {
		return e
	}
	var st unix.Stat_t
	var err error
	for {
		err = unix.Fstatat(d.fd, d.sub+de.name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return e
	}
	e.mode, e.id = modeOf(&st), idOf(&st)
	e.stat = e.mode&fs.ModeSymlink == 0
	if de.typ == typeUnknown {
		e.dir = e.mode.IsDir()
	}
	return e
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
