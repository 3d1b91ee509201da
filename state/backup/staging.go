package backup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/p2pstream/p2ptls/state"
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
// holds StagingMarker, which its restore creates first and keeps an
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
const StagingMarker = ".restore-staging"

// StagingInfix joins the target's path and the random part of a staging
// directory's name.
const StagingInfix = ".restore-tmp-"

// Kinds of Leftover.
const (
	// LeftoverStaging is the staging directory of a restore that died
	// before the swap: a partial copy of the archive, safe to remove.
	LeftoverStaging = "staging"
	// LeftoverActive is the staging directory of a restore running now.
	LeftoverActive = "active"
	// LeftoverUnknown has no staging marker: it may hold the state from
	// before a restore that died just after the swap.
	LeftoverUnknown = "unknown"
)

// Leftover is a directory beside the state directory at a staging name.
type Leftover struct {
	Path string
	Kind string
}

// Leftovers lists the directories beside target that a restore left or is
// using, without changing anything (doctor uses it).
func Leftovers(target string) []Leftover {
	found, _ := filepath.Glob(globEscape(target) + StagingInfix + "*")
	sort.Strings(found)
	var out []Leftover
	for _, p := range found {
		if info, err := os.Lstat(p); err != nil || !info.IsDir() {
			continue // a file or link at such a name is no restore's
		}
		kind, unlock := probe(p, syscall.LOCK_SH)
		if unlock != nil {
			unlock()
		}
		out = append(out, Leftover{Path: p, Kind: kind})
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
	marker := filepath.Join(dir, StagingMarker)
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
// target. It returns what it removed, what is left that a person should
// look at, and warnings about what it could not remove (which does not
// stop the restore: the directory is not in its way).
func cleanStaging(target string) (removed []string, left []Leftover, warns []string) {
	found, _ := filepath.Glob(globEscape(target) + StagingInfix + "*")
	sort.Strings(found)
	for _, p := range found {
		if info, err := os.Lstat(p); err != nil || !info.IsDir() {
			continue
		}
		kind, unlock := probe(p, syscall.LOCK_EX)
		switch kind {
		case LeftoverStaging:
			// Holding the flock: no restore can be using it.
			err := os.RemoveAll(p)
			unlock()
			if err != nil {
				warns = append(warns, fmt.Sprintf("cannot remove %s, left from an interrupted restore (%v); remove it by hand: rm -rf %s", p, unwrapPath(err), p))
				continue
			}
			removed = append(removed, p)
		case LeftoverUnknown:
			left = append(left, Leftover{Path: p, Kind: kind})
		}
	}
	return removed, left, warns
}

// leftoverWarning is what restore says about a leftover it did not remove.
func leftoverWarning(l Leftover, target string) string {
	return fmt.Sprintf("%s is left from an interrupted restore and may hold the state from before it; look into it, then remove it (rm -rf %s) or keep it (mv %s %s.pre-restore-<time>)",
		l.Path, l.Path, l.Path, target)
}

// staging is the directory a restore extracts into, with the flock that
// marks it as in use.
type staging struct {
	dir    string
	marker *os.File
}

// makeStaging creates the empty directory the archive is extracted into,
// beside the target so that the swap is a rename within one filesystem,
// with its marker locked.
func makeStaging(target string, exists bool) (*staging, error) {
	parent := filepath.Dir(target)
	if err := state.MkdirAll(parent); err != nil {
		return nil, err
	}
	if exists {
		if err := sameFilesystem(target, parent); err != nil {
			return nil, err
		}
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	dir := target + StagingInfix + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(dir, state.DirMode); err != nil {
		return nil, fault.Failf("restore needs to write beside the state directory; check that its parent is writable",
			"cannot create %s: %v", dir, unwrapPath(err))
	}
	f, err := os.OpenFile(filepath.Join(dir, StagingMarker), os.O_RDWR|os.O_CREATE|os.O_EXCL, state.SecretMode)
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
	return &staging{dir: dir, marker: f}, nil
}

// unmark removes the marker before the staging directory becomes the
// state: from then on a leftover at its name is never removed
// automatically. The flock stays held until release.
func (s *staging) unmark() error {
	if err := os.Remove(filepath.Join(s.dir, StagingMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// release drops the flock.
func (s *staging) release() { _ = s.marker.Close() }
