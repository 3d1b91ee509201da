package state

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchange swaps two directories in one step (renameat2 RENAME_EXCHANGE):
// at every moment each path names a complete state.
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return errNoExchange // an old kernel, or a filesystem without it (NFS)
	}
	return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
}

// mountID is the id of the mount p is on (statx STATX_MNT_ID, Linux 5.8);
// ok is false where the kernel does not tell it.
func mountID(p string) (id uint64, ok bool) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_MNT_ID, &st); err != nil || st.Mask&unix.STATX_MNT_ID == 0 {
		return 0, false
	}
	return st.Mnt_id, true
}
