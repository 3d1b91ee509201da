package state

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/p2pstream/p2ptls/state/fault"
)

// A restore extracts the archive into <target>.restore-tmp-<random>, a full
// copy of every private key, and swaps it in only at the end. A restore
// killed before the swap leaves that directory behind; the next restore
// removes it and doctor reports it.
//
// Telling a dead restore's staging directory from a live one's, and from
// the previous state that a restore killed right after the swap leaves at
// the same kind of name, needs no clock or pid: every staging directory
// holds RestoreStagingMarker, which its restore creates first and keeps an
// exclusive flock on until it ends (the kernel drops the flock when the
// process dies), and which it removes just before the swap. So:
//
//   - marker, flock free: a restore died while staging; the directory holds
//     only what it extracted, and is removed;
//   - marker, flock held: a restore is staging right now; left alone;
//   - no marker: a restore died after the swap (this is the previous state)
//     or it is not ours; never removed automatically, only reported.
//
// The names are part of the on-disk layout: doctor reads them too.
const RestoreStagingMarker = ".restore-staging"

// RestoreStagingInfix joins the target's path and the random part of a
// staging directory's name.
const RestoreStagingInfix = ".restore-tmp-"

// Kinds of RestoreLeftover.
const (
	// LeftoverStaging is the staging directory of a restore that died
	// before the swap: a partial copy of the archive, safe to remove.
	LeftoverStaging = "staging"
	// LeftoverActive is the staging directory of a restore running now.
	LeftoverActive = "active"
	// LeftoverUnknown has no staging marker: it may hold the state from
	// before a restore that died just after the swap.
	LeftoverUnknown = "unknown"
	// LeftoverSwapping is a directory of a restore into a mount point that
	// died while swapping the content: the next p2ptls command that takes
	// the lock finishes the swap (see SwapJournalFile).
	LeftoverSwapping = "swapping"
	// LeftoverKept is the previous state a restore into a mount point kept
	// inside it (--force): <dir>/pre-restore-<time>.
	LeftoverKept = "kept"
)

// RestoreLeftover is a directory beside the state directory at a staging
// name, or inside it at a name of a restore into a mount point.
type RestoreLeftover struct {
	Path string
	Kind string
	// Inside says it is inside the state directory (a mount point).
	Inside bool
}

// RestoreLeftovers lists the directories beside target that a restore
// left or is using, and those inside it of a restore into a mount point,
// without changing anything (doctor uses it).
func RestoreLeftovers(target string) []RestoreLeftover {
	var out []RestoreLeftover
	for _, c := range leftoverCandidates(target) {
		kind := c.kind
		if kind == "" {
			var unlock func()
			kind, unlock = probe(c.path, syscall.LOCK_SH)
			if unlock != nil {
				unlock()
			}
		}
		out = append(out, RestoreLeftover{Path: c.path, Kind: kind, Inside: c.inside})
	}
	return out
}

// leftoverCandidate is a directory at a restore's name; kind is set when
// its name alone tells it, "" when probe must.
type leftoverCandidate struct {
	path   string
	inside bool
	kind   string
}

// leftoverCandidates finds the directories at restore names beside and
// inside target, sorted by path within each place.
func leftoverCandidates(target string) []leftoverCandidate {
	var out []leftoverCandidate
	isDir := func(p string) bool {
		info, err := os.Lstat(p)
		return err == nil && info.IsDir() // a file or link at such a name is no restore's
	}
	beside, _ := filepath.Glob(globEscape(target) + RestoreStagingInfix + "*")
	sort.Strings(beside)
	for _, p := range beside {
		if isDir(p) {
			out = append(out, leftoverCandidate{path: p})
		}
	}
	entries, err := os.ReadDir(target)
	if err != nil {
		return out
	}
	// The directories a pending swap names are its own, whatever their
	// marker says.
	var pending swapJournal
	havePending := false
	if j, err := readSwapJournal(target); err == nil && j != nil {
		pending, havePending = *j, true
	}
	for _, e := range entries {
		n := e.Name()
		p := filepath.Join(target, n)
		c := leftoverCandidate{path: p, inside: true}
		switch {
		case havePending && (n == pending.Staged || n == pending.Old):
			c.kind = LeftoverSwapping
		case strings.HasPrefix(n, InsideStagingPrefix):
		case strings.HasPrefix(n, InsideOldPrefix):
			c.kind = LeftoverUnknown
		case strings.HasPrefix(n, KeptPrefix):
			c.kind = LeftoverKept
		default:
			continue
		}
		if isDir(p) {
			out = append(out, c)
		}
	}
	return out
}

// globEscape quotes the glob metacharacters of a path.
func globEscape(p string) string {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*', '?', '[', '\\':
			out = append(out, '\\', c)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// probe classifies one leftover directory. For LeftoverStaging it returns
// with the flock (of kind how) held and unlock to release it.
func probe(dir string, how int) (kind string, unlock func()) {
	marker := filepath.Join(dir, RestoreStagingMarker)
	f, err := os.OpenFile(marker, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return LeftoverUnknown, nil
	}
	err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return LeftoverActive, nil
	}
	if err != nil {
		f.Close()
		return LeftoverUnknown, nil
	}
	// The restore that held it may have ended between the open and the
	// flock, removing the marker and swapping: only the marker still at
	// its path proves that the directory is still its staging directory.
	held, err1 := f.Stat()
	now, err2 := os.Lstat(marker)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return LeftoverUnknown, nil
	}
	return LeftoverStaging, func() { f.Close() }
}

// cleanStaging removes the staging directories of dead restores beside
// target and inside it. It returns what it removed, what is left that a
// person should look at, and warnings about what it could not remove
// (which does not stop the restore: the directory is not in its way).
func cleanStaging(target string) (removed []string, left []RestoreLeftover, warns []string) {
	for _, c := range leftoverCandidates(target) {
		if c.kind != "" {
			if c.kind == LeftoverUnknown {
				left = append(left, RestoreLeftover{Path: c.path, Kind: c.kind, Inside: c.inside})
			}
			continue // a pending swap's (its Lock finishes it) or a kept state
		}
		kind, unlock := probe(c.path, syscall.LOCK_EX)
		switch kind {
		case LeftoverStaging:
			// Holding the flock: no restore can be using it.
			err := removeStaging(c.path)
			unlock()
			if err != nil {
				warns = append(warns, fmt.Sprintf("cannot remove %s, left from an interrupted restore (%v); remove it by hand: rm -rf %s", c.path, unwrapPath(err), c.path))
				continue
			}
			removed = append(removed, c.path)
		case LeftoverUnknown:
			left = append(left, RestoreLeftover{Path: c.path, Kind: kind, Inside: c.inside})
		}
	}
	return removed, left, warns
}

// removeStaging removes a staging directory with its marker last, so that
// a process killed half-way leaves a directory that is still known for a
// dead restore's staging (marker, flock free), not one that may hold a
// previous state.
func removeStaging(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != RestoreStagingMarker {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, RestoreStagingMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Remove(dir)
}

// Warning is what restore says about a leftover it did not remove.
func (l RestoreLeftover) Warning(target string) string {
	switch l.Kind {
	case LeftoverStaging:
		return fmt.Sprintf("%s is left from an interrupted restore that died while extracting; the next restore removes it, or remove it now: rm -rf %s", l.Path, l.Path)
	case LeftoverSwapping:
		return fmt.Sprintf("%s belongs to a restore that was interrupted while swapping the state in; the next p2ptls command finishes it", l.Path)
	case LeftoverKept:
		return fmt.Sprintf("%s is the state from before a restore, kept by --force; remove it when you no longer need it: rm -rf %s", l.Path, l.Path)
	}
	return fmt.Sprintf("%s is left from an interrupted restore and may hold the state from before it; look into it, then remove it (rm -rf %s) or keep it (mv %s %s)",
		l.Path, l.Path, l.Path, l.KeepAs(target))
}

// KeepAs is where a person keeps an unknown leftover that holds a
// previous state: beside the target as a directory restore keeps one, or
// inside it for a mount point.
func (l RestoreLeftover) KeepAs(target string) string {
	if l.Inside {
		return filepath.Join(target, KeptPrefix+"<time>")
	}
	return target + ".pre-restore-<time>"
}

// staging is the directory a restore extracts into, with the flock that
// marks it as in use.
type staging struct {
	dir    string
	target string
	marker *os.File
	dirs   []stagedDir // made by Mkdir, for finish
}

// stagedDir is a directory of the staged state and its final mode.
type stagedDir struct {
	name string
	perm fs.FileMode
}

// makeStaging creates the empty directory the archive is extracted into,
// on the target's file system so that the swap is a rename: beside the
// target (<target>.restore-tmp-<random>), or inside it for a mount point
// (<target>/.p2ptls-restore-<random>), with its marker locked.
func makeStaging(target string, inside bool) (*staging, error) {
	parent := filepath.Dir(target)
	if !inside {
		if err := MkdirAll(parent); err != nil {
			return nil, err
		}
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	dir := target + RestoreStagingInfix + hex.EncodeToString(rnd[:])
	hint := "restore needs to write beside the state directory; check that its parent is writable"
	if inside {
		dir = filepath.Join(target, InsideStagingPrefix+hex.EncodeToString(rnd[:]))
		hint = "restore into a mount point stages inside it; check that the state directory is writable"
	}
	if err := os.Mkdir(dir, DirMode); err != nil {
		return nil, fault.Failf(hint, "cannot create %s: %v", dir, unwrapPath(err))
	}
	f, err := os.OpenFile(filepath.Join(dir, RestoreStagingMarker), os.O_RDWR|os.O_CREATE|os.O_EXCL, SecretMode)
	if err == nil {
		// Nobody else can have it yet: the name is new.
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("mark %s as a restore's: %w", dir, err), os.RemoveAll(dir))
	}
	return &staging{dir: dir, target: target, marker: f}, nil
}

// unmark removes the marker before the staging directory becomes the
// state: from then on a leftover at its name is never removed
// automatically. The flock stays held until release.
func (s *staging) unmark() error {
	if err := os.Remove(filepath.Join(s.dir, RestoreStagingMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// release drops the flock.
func (s *staging) release() { _ = s.marker.Close() }

// unwrapPath drops the path from an fs.PathError whose message names it.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
