//go:build linux || openbsd || dragonfly || solaris || illumos || android

package state

import "syscall"

// ctimeOf is the inode change time: a file copied in place with its old
// modification time kept (cp -p, rsync -t) still changes it.
func ctimeOf(st *syscall.Stat_t) int64 { return st.Ctim.Nano() }
