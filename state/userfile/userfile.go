// Package userfile reads the files a user names — certificates, keys, CA
// files, tokens, passphrases, archives — without letting the name hurt the
// process: only regular files (after symlinks), opened without blocking,
// and bounded in size. A FIFO would block an open or read forever, and
// /dev/zero or /dev/urandom would grow a plain read until memory runs out.
package userfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Size limits of what a user may name.
const (
	// MaxPEM bounds a certificate chain, key or CA file.
	MaxPEM = 1 << 20
	// MaxSecret bounds a token, passphrase or HMAC file.
	MaxSecret = 64 << 10
)

const hintRegular = "give the path of a regular file; pipes, devices and directories are refused"

// Open opens path for reading when it is a regular file. The open does not
// block on a FIFO, and what is not a regular file is refused as bad input,
// naming what it is.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, fault.Invalidf("check the path, and that this user may read the file", "cannot read %s: %v", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fault.Invalidf(hintRegular, "cannot read %s: it is %s, not a regular file", path, kind(info.Mode()))
	}
	return f, nil
}

// Read returns the content of the regular file path, refusing one larger
// than limit bytes.
func Read(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, limit)
}

// ReadAll reads r to its end, refusing more than limit bytes; name is how
// the message calls r ("standard input").
func ReadAll(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fault.Invalidf("give the file that is meant; certificates, keys and CA files are far smaller",
			"cannot read %s: it is larger than the %s limit", name, Size(limit))
	}
	return b, nil
}

// Size prints a limit the way the README states it.
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file (" + m.Type().String() + ")"
}
