package state

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

func openDirFD(p string) int {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1
		}
		return fd
	}
}

func closeDirFD(fd int) { unix.Close(fd) }

// statAt is statID of rel under the directory fd: fstatat without
// AT_SYMLINK_NOFOLLOW follows links as os.Stat does, and the identity is
// made from the same fields as fileIDOf's (ctimeOf's Ctim on Linux).
func statAt(fd int, rel string) (FileID, bool) {
	id, err := identifyAt(fd, "", rel)
	return id, err == nil && id != (FileID{})
}

// identifyAt is identify of rel under the directory dir, open as fd: by
// fstatat, without the walk of dir's path or a FileInfo.
func identifyAt(fd int, _, rel string) (FileID, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(fd, rel, &st, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOENT || err == unix.ENOTDIR:
			return FileID{}, nil
		case err != nil:
			return FileID{}, &fs.PathError{Op: "fstatat", Path: rel, Err: err}
		}
		return FileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, nil
	}
}
