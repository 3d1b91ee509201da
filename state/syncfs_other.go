//go:build !linux

package state

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// wholeFS is Linux's syncfs(2); elsewhere every file is synced on its own.
type wholeFS struct{}

func openWholeFS(string) *wholeFS { return nil }

func (*wholeFS) holds(string) bool { return false }
func (*wholeFS) sync() error       { return nil }
func (*wholeFS) close()            {}

// flusher is Linux's background syncfs; there is none elsewhere.
type flusher struct{}

func (*wholeFS) startFlushing() *flusher { return nil }
func (*flusher) wrote()                  {}
func (*flusher) stop()                   {}

// writeOnce creates path, which must not exist, holding data with mode
// perm, unsynced (see the Linux one).
func writeOnce(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", filepath.Dir(path), err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("set mode of %s: %w", path, err)
	}
	return nil
}
