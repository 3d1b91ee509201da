package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// wholeFS is a file system a large change is made durable on by one
// syncfs(2) instead of an fsync of each of its files and directories.
type wholeFS struct {
	f   *os.File
	dev uint64
}

// Local file systems whose syncfs writes and waits for every file, every
// directory and their metadata, as fsync of each would. Others (NFS, FUSE,
// overlays) keep one fsync per file: what their syncfs promises varies.
var syncfsTypes = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:  true, // ext2, ext3 and ext4
	unix.XFS_SUPER_MAGIC:   true,
	unix.BTRFS_SUPER_MAGIC: true,
	unix.TMPFS_MAGIC:       true,
}

// syncfsReportsErrors says whether this kernel's syncfs returns the write
// errors of files (Linux 5.8 and later: errors since the descriptor was
// opened); before, it could return success for a file that failed to write.
var syncfsReportsErrors = sync.OnceValue(func() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8)
})

// kernelAtLeast reports whether release ("6.1.0-18-amd64") is major.minor
// or later.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	minorDigits := parts[1]
	if i := strings.IndexFunc(minorDigits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = minorDigits[:i] // "8-rc1"
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(minorDigits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// openWholeFS opens the file system of dir for one syncfs, or returns nil
// where that is not as good as fsync of each file (see syncfsTypes,
// syncfsReportsErrors). It must be opened before the writes it is to make
// durable: syncfs reports the write errors since then.
func openWholeFS(dir string) *wholeFS {
	if !syncfsReportsErrors() {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if unix.Fstatfs(int(f.Fd()), &sfs) != nil || !syncfsTypes[int64(sfs.Type)] || unix.Fstat(int(f.Fd()), &st) != nil {
		_ = f.Close()
		return nil
	}
	return &wholeFS{f: f, dev: uint64(st.Dev)}
}

// syncfsCall is syncfs(2); a test makes it fail.
var syncfsCall = unix.Syncfs

// holds reports whether dir (which exists) is on this file system.
func (w *wholeFS) holds(dir string) bool {
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil && uint64(st.Dev) == w.dev
}

// sync writes and waits for everything written to the file system.
func (w *wholeFS) sync() error {
	err := ignoringEINTR(func() error { return syncfsCall(int(w.f.Fd())) })
	if err != nil {
		return fmt.Errorf("sync the file system of %s: %w", w.f.Name(), err)
	}
	return nil
}

func (w *wholeFS) close() { _ = w.f.Close() }

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// umask is the process's file mode creation mask as the kernel reports it
// (/proc/self/status, Linux 4.7 and later), -1 when it cannot be read.
// Nothing in p2ptls changes it, so one read serves every file.
var umask = sync.OnceValue(readUmask)

func readUmask() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return -1
			}
			return int(m)
		}
	}
	return -1
}

// writeOnce creates path, which must not exist, holding data with mode
// perm, for a change that one syncfs makes durable (wholeFS): open, write
// and close, where os.OpenFile, Write, Chmod and Close make nine system
// calls (the runtime tries to add every file it opens to its poller). The
// mode is set explicitly only when the umask would take bits of perm away:
// the umask must not decide. On error the file is removed.
func writeOnce(path string, data []byte, perm fs.FileMode) (err error) {
	fd, err := ignoringEINTRFd(func() (int, error) {
		return unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(perm.Perm()))
	})
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", filepath.Dir(path), &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer func() {
		if cerr := unix.Close(fd); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
		if err != nil {
			_ = unix.Unlink(path)
		}
	}()
	for b := data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("write %s: %w", path, err)
		case n == 0:
			return fmt.Errorf("write %s: %w", path, io.ErrShortWrite)
		}
		b = b[n:]
	}
	if m := umask(); m < 0 || int(perm.Perm())&m != 0 {
		if err := ignoringEINTR(func() error { return unix.Fchmod(fd, uint32(perm.Perm())) }); err != nil {
			return fmt.Errorf("set mode of %s: %w", path, err)
		}
	}
	return nil
}

// flusher keeps the disk writing a large change while it is staged, so
// that the syncfs before the journal finds little left to do: from one
// goroutine, one syncfs at a time, the next as soon as the last returns
// if a file was written since it began. It is a hint only, its errors
// ignored: the syncfs of wholeFS is what makes the change durable, and it
// is made on a descriptor of its own because syncfs reports a write error
// once per descriptor. Whole-file-system syncs rather than a
// sync_file_range of each file as it is closed: those submitted 40k
// separate 4 KiB writes for an import of 10k mappings, in the threads
// staging them, where write-back merges the neighbouring blocks of many
// files (clibench's import on ext4 and xfs: 1.9–2.1 s with
// sync_file_range, 1.4–1.8 s with this).
type flusher struct {
	kick chan struct{}
	done chan struct{}
}

// backgroundSyncfs is the flusher's syncfs(2); a test counts its calls.
var backgroundSyncfs = unix.Syncfs

// startFlushing starts the flusher of w's file system; nil when a
// descriptor cannot be opened (the change is then synced at the end only).
func (w *wholeFS) startFlushing() *flusher {
	fd, err := ignoringEINTRFd(func() (int, error) {
		return unix.Open(w.f.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil
	}
	f := &flusher{kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer unix.Close(fd)
		for range f.kick {
			_ = ignoringEINTR(func() error { return backgroundSyncfs(fd) })
		}
	}()
	return f
}

// wrote tells the flusher that a file was written.
func (f *flusher) wrote() {
	if f == nil {
		return
	}
	select {
	case f.kick <- struct{}{}:
	default: // one is pending already
	}
}

// stop waits for the syncfs in flight, which the final one would wait
// for anyway, and ends the flusher.
func (f *flusher) stop() {
	if f == nil {
		return
	}
	close(f.kick)
	<-f.done
}

func ignoringEINTRFd(fn func() (int, error)) (int, error) {
	for {
		fd, err := fn()
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
