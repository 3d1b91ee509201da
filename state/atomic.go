package state

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Modes used for everything p2ptls writes.
const (
	DirMode    fs.FileMode = 0o700
	SecretMode fs.FileMode = 0o600 // private keys, tokens, hashes, p2ptls.toml
	PublicMode fs.FileMode = 0o644 // certificates
)

// WriteFileAtomic replaces path with data so that readers see either the old
// or the new content, never a mix, and the new content survives a crash once
// this returns: temp file in the same directory, write, fsync, chmod, rename,
// fsync the directory. The temp file is removed on every error path.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	// Chmod explicitly: CreateTemp uses 0600 and the umask must not decide.
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("set mode of %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// MkdirAll creates dir and its missing parents with DirMode.
func MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	return nil
}
