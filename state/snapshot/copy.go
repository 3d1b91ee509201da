package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// MarkerFile, in the copy's root, says whose copy the directory holds and
// of which revision; it is written with every update of the copy, in the
// same Apply.
const MarkerFile = "p2ptls-snapshot.toml"

// markerFormat is the only MarkerFile format this build writes and reads.
const markerFormat = 1

const markerHeader = "# p2ptls snapshot: serve's copy of the shared store's last good state,\n" +
	"# served while the store is unreachable. Written by serve; do not edit.\n"

// marker is MarkerFile's content.
type marker struct {
	Format   int       `toml:"format"`
	Source   string    `toml:"source"`
	Revision string    `toml:"revision"`
	SyncedAt time.Time `toml:"synced_at"`
}

func (m marker) encode() ([]byte, error) {
	b, err := toml.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte(markerHeader), b...), nil
}

func parseMarker(b []byte) (marker, error) {
	var m marker
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return marker{}, err
	}
	if m.Format != markerFormat {
		return marker{}, fmt.Errorf("format %d is not %d, the one this build reads", m.Format, markerFormat)
	}
	return m, nil
}

// excluded reports whether a store name stays out of the copy: runtime
// status, in-flight challenges, a directory store's lock, revision,
// journals and restore entries, temporary files, and the marker (which
// only the copy has).
func excluded(name string) bool {
	top, _, _ := strings.Cut(name, "/")
	switch {
	case top == state.RunDir, name == state.ChallengesDir, strings.HasPrefix(name, state.ChallengesDir+"/"),
		name == state.LockFile, name == state.RevisionFile, name == state.JournalFile,
		name == state.RestoreStagingMarker, name == MarkerFile, state.IsRestoreEntry(top):
		return true
	}
	base := path.Base(name)
	return strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-")
}

// runtimeLocal reports whether name is runtime status that a Store whose
// primary is away keeps in the copy's directory: serve writes its status
// as it starts and runs on the copy, and must not fail for it. The copy's
// own memos and claims are not among them.
func runtimeLocal(name string) bool {
	in := func(dir string) bool { return name == dir || strings.HasPrefix(name, dir+"/") }
	return in(state.RunDir) && !in(state.MemoDir) && !in(state.ClaimsDir)
}

// hidden reports whether the copy, as served, has no name.
func hidden(name string) bool {
	n := path.Clean(name)
	return excluded(n) && !runtimeLocal(n)
}

// local is the copy as it is served: the directory without what is no
// part of the primary's state (its lock, the marker, its memos), but with
// the runtime status written while the primary was away.
type local struct{ d *state.Dir }

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (l local) Read(ctx context.Context, name string) ([]byte, error) {
	if hidden(name) {
		return nil, notExist("read", name)
	}
	return l.d.Read(ctx, name)
}

func (l local) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	if hidden(name) {
		return nil, notExist("stat", name)
	}
	return l.d.Stat(ctx, name)
}

func (l local) List(ctx context.Context, dir string) ([]string, error) {
	if dir != "" && hidden(dir) {
		return nil, nil
	}
	names, err := l.d.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return hidden(path.Join(dir, n)) }), nil
}

// inspect checks the copy's directory before anything uses it and returns
// its marker (found false when there is no copy yet). A directory holding
// anything but a copy is refused: the copy replaces what it holds.
func (s *Store) inspect(ctx context.Context) (marker, bool, error) {
	dir := s.o.Dir
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return marker{}, false, nil
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("snapshot directory: %w", err)
	}
	if !info.IsDir() {
		return marker{}, false, fault.Invalidf("point the snapshot at a directory of its own", "the snapshot directory %s is not a directory", dir)
	}
	// A journal is an update of the copy a crash cut short: the lock
	// finishes it before the directory is judged.
	if _, err := os.Lstat(filepath.Join(dir, state.JournalFile)); err == nil {
		if err := s.lockCopy(ctx, func() error { return nil }); err != nil {
			return marker{}, false, err
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if errors.Is(err, fs.ErrNotExist) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return marker{}, false, fmt.Errorf("snapshot directory: %w", err)
		}
		for _, e := range entries {
			if !excluded(e.Name()) {
				return marker{}, false, fault.Invalidf("point the snapshot at an empty or new directory of its own",
					"%s is not a p2ptls snapshot: it holds %s but no %s", dir, e.Name(), MarkerFile)
			}
		}
		return marker{}, false, nil // only what a first update cut short left
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("snapshot directory: %w", err)
	}
	m, err := parseMarker(b)
	if err != nil {
		return marker{}, false, fault.Failf("remove the directory; serve makes a new snapshot once the store answers",
			"the snapshot %s is damaged: %v", filepath.Join(dir, MarkerFile), err)
	}
	return m, true, nil
}

// lockCopy runs fn under the copy's lock.
func (s *Store) lockCopy(ctx context.Context, fn func() error) (err error) {
	unlock, err := s.copy.Lock(ctx, "update the snapshot of "+s.o.Source)
	if err != nil {
		return fmt.Errorf("lock the snapshot %s: %w", s.o.Dir, err)
	}
	defer func() { err = errors.Join(err, unlock()) }()
	return fn()
}
