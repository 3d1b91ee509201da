package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EnvConfigDir names the state directory; --config-dir overrides it.
const EnvConfigDir = "CONFIG_DIR"

// DefaultLockTimeout is how long a mutation waits for another one to finish.
const DefaultLockTimeout = 30 * time.Second

// ResolveDir returns the state directory: flag > $CONFIG_DIR >
// $XDG_DATA_HOME/p2ptls > ~/.local/share/p2ptls. The result is absolute so
// that messages and a later chdir cannot confuse it.
func ResolveDir(flagValue string, getenv func(string) string) (string, error) {
	dir := flagValue
	if dir == "" {
		dir = getenv(EnvConfigDir)
	}
	if dir == "" {
		if xdg := getenv("XDG_DATA_HOME"); xdg != "" {
			dir = filepath.Join(xdg, "p2ptls")
		}
	}
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("cannot find the state directory: HOME is not set; set CONFIG_DIR or pass --config-dir")
		}
		dir = filepath.Join(home, ".local", "share", "p2ptls")
	}
	return filepath.Abs(dir)
}

// Dir is the Store on a local directory.
type Dir struct {
	root        string
	lockTimeout time.Duration
	// writes counts changes outside run/, so that unlocking knows whether
	// to bump the revision.
	writes atomic.Int64
	// touched counts every write and delete, so that unlocking knows
	// whether a state directory the lock created is still unused.
	touched atomic.Int64
	names   nameLog // what this lock holder changed, for the revision
	// leftoversHeld is set when removeLeftovers left its work to the
	// recovery of a journal (see finishOnLock).
	leftoversHeld atomic.Bool

	memosMu  sync.Mutex
	memos    map[string]*Memo
	memoPins int
	// memoNext is what Update committed to the records memo, saved with
	// the revision the change gets (see bumpOnChange).
	memoNext atomic.Pointer[recordsCommit]
}

var _ Store = (*Dir)(nil)

// OpenDir returns the store rooted at root. Nothing is created until the
// first write or lock.
func OpenDir(root string, lockTimeout time.Duration) *Dir {
	return &Dir{root: root, lockTimeout: lockTimeout}
}

// Root is the directory's absolute path, for messages.
func (d *Dir) Root() string { return d.root }

// path turns a store name into a file path, refusing names that would
// escape the root.
func (d *Dir) path(name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || path.IsAbs(name) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("invalid state file name %q", name)
	}
	return filepath.Join(d.root, filepath.FromSlash(clean)), nil
}

// Read returns the content of name; a missing file gives an error matching
// fs.ErrNotExist.
func (d *Dir) Read(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// Stat describes name; serve uses it to notice changed files cheaply.
func (d *Dir) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.Stat(p)
}

// Write replaces name atomically, creating parent directories 0700.
func (d *Dir) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := noteChange(ctx, d, name); err != nil {
		return err
	}
	d.counted(name)
	if err := MkdirAll(filepath.Dir(p)); err != nil {
		return err
	}
	return WriteFileAtomic(p, data, perm)
}

// List returns the sorted names of the entries directly under dir ("" for
// the root); a missing directory lists as empty.
func (d *Dir) List(ctx context.Context, dir string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := d.root
	if dir != "" {
		var err error
		if p, err = d.path(dir); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

// Delete removes name (a file, or a directory with everything in it);
// removing what is not there is not an error.
func (d *Dir) Delete(ctx context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := noteChange(ctx, d, name); err != nil {
		return err
	}
	d.counted(name)
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RunDir holds serve's runtime status; writing it is not a state change.
const RunDir = "run"

// Challenge directories: state/acme publishes, serve answers.
const (
	ChallengesDir = "acme/challenges"
	HTTP01Dir     = ChallengesDir + "/http-01"
	TLSALPN01Dir  = ChallengesDir + "/tls-alpn-01"
)

// counted records a change of the desired state. Runtime status and
// in-flight challenges are not: serve reads those directly when asked.
func (d *Dir) counted(name string) {
	d.touched.Add(1)
	d.names.note(name)
	if !IsRuntime(name) {
		d.writes.Add(1)
	}
}
