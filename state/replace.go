package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Staging is where the new content of a Store.Replace is written before
// it replaces the store's.
type Staging interface {
	// Target names the store being replaced, for messages: a directory's
	// real path.
	Target() string
	// Mkdir makes a directory, its parent first; perm is its final mode,
	// given once every file is in (a restrictive mode could block writing
	// into it).
	Mkdir(name string, perm fs.FileMode) error
	// Create makes a new file with mode perm; its content is durable once
	// Close returns nil.
	Create(name string, perm fs.FileMode) (io.WriteCloser, error)
}

// ReplaceOptions tune Store.Replace.
type ReplaceOptions struct {
	// DryRun stages nothing and swaps nothing: fill writes into a Staging
	// that keeps nothing, and what a real run would clean up is reported.
	DryRun bool
	// Check runs under the store's lock just before the swap, on the
	// content about to be replaced: an error stops the Replace with the
	// store as it was; keep says to keep the old content aside rather than
	// remove it.
	Check func(ctx context.Context, current Store) (keep bool, err error)
	// Now stamps the new revision and names the kept content.
	Now time.Time
	// Warn receives what the Replace noticed and did not stop for, as it
	// happens.
	Warn func(string)
}

// Replaced is what a Replace did.
type Replaced struct {
	// Kept is where the old content is kept, "" when it was removed.
	Kept string
}

// Replace (restore's swap) makes the directory's whole content what fill
// stages, in one step: a crash leaves the old state or the new one at
// the directory's path, never a mix. fill writes into
// <dir>.restore-tmp-<random> beside it, so that the swap is a rename on
// one filesystem; a failure removes it again. An existing directory is
// exchanged with it in one rename while holding both locks, so that no
// p2ptls command is half-way through a change; the old state then moves to
// <dir>.pre-restore-<time> (Check said keep) or is removed. The new state
// gets a new revision, so that a running serve reloads everything.
//
// A directory that is a mount point cannot be renamed: its content is
// swapped instead, under a journal (see replaceContents).
func (d *Dir) Replace(ctx context.Context, fill func(Staging) error, opts ReplaceOptions) (*Replaced, error) {
	warn := opts.Warn
	if warn == nil {
		warn = func(string) {}
	}
	target, exists, err := resolveTarget(d.root)
	if err != nil {
		return nil, err
	}
	// Before this restore makes its own staging directory: those of dead
	// restores go (a dry run only looks), the rest is pointed out.
	if opts.DryRun {
		for _, l := range RestoreLeftovers(target) {
			if l.Kind != LeftoverActive {
				warn(l.Warning(target))
			}
		}
		return &Replaced{}, fill(discard(target))
	}
	removed, unknown, warns := cleanStaging(target)
	for _, w := range warns {
		warn(w)
	}
	for _, p := range removed {
		warn(fmt.Sprintf("removed %s, left from an interrupted restore", p))
	}
	for _, l := range unknown {
		warn(l.Warning(target))
	}
	if exists {
		mount, err := IsMountPoint(target)
		if err != nil {
			return nil, err
		}
		if mount {
			return d.replaceContents(ctx, target, fill, opts, warn)
		}
	}
	st, err := makeStaging(target, false)
	if err != nil {
		return nil, err
	}
	defer st.release()
	staged := st.dir
	defer func() {
		if staged != "" {
			_ = os.RemoveAll(staged)
		}
	}()
	if err := fill(st); err != nil {
		return nil, err
	}
	if err := st.finish(); err != nil {
		return nil, err
	}
	kept, warns, err := swapIn(ctx, d, target, st, exists, opts)
	staged = "" // swapped in, or already removed by swapIn
	for _, w := range warns {
		warn(w)
	}
	if err != nil {
		return nil, err
	}
	return &Replaced{Kept: kept}, nil
}

// Replace refuses: a change under the lock cannot replace the whole store.
func (t *Tx) Replace(context.Context, func(Staging) error, ReplaceOptions) (*Replaced, error) {
	return nil, errors.New("a change of the state cannot replace the whole state")
}

// RefuseReplace is the refusal of a Replace of target, which holds a
// state, without being told to.
func RefuseReplace(target string) error {
	kept := "beside it as " + filepath.Base(target) + ".pre-restore-<time>"
	if mount, err := IsMountPoint(target); err == nil && mount {
		kept = "inside it as " + filepath.Join(target, KeptPrefix+"<time>")
	}
	return fault.Failf("pass --force to replace it; the current state is then kept "+kept,
		"the state directory %s is not empty", target)
}

// resolveTarget returns the state directory's real path (a symlinked
// CONFIG_DIR is restored where it points) and whether it exists.
func resolveTarget(root string) (string, bool, error) {
	real, err := filepath.EvalSymlinks(root)
	if errors.Is(err, fs.ErrNotExist) {
		if dest, dangling := danglingLink(root); dangling {
			// Restoring "into" it would replace the link, which is not what
			// a symlinked CONFIG_DIR asks for, and fails the same way each time.
			return "", false, fault.Failf(fmt.Sprintf("create the directory it points to (mkdir -p -m 700 %s) and restore again, or point --config-dir or CONFIG_DIR at a real directory", dest),
				"the state directory %s is a symbolic link to %s, which does not exist", root, dest)
		}
		return root, false, nil
	}
	if err != nil {
		return "", false, err
	}
	info, err := os.Stat(real)
	if err != nil {
		return "", false, err
	}
	if !info.IsDir() {
		return "", false, fault.Failf("check --config-dir or CONFIG_DIR", "the state directory %s is not a directory", root)
	}
	return real, true, nil
}

// danglingLink reports whether p is a symbolic link whose chain ends at a
// path that does not exist, and that path.
func danglingLink(p string) (string, bool) {
	for range 40 { // the kernel's own limit on a chain
		info, err := os.Lstat(p)
		if err != nil {
			return p, false
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			return p, false
		}
		dest, err := os.Readlink(p)
		if err != nil {
			return p, false
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(p), dest)
		}
		if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
			return dest, true
		}
		p = dest
	}
	return p, false
}

// IsMountPoint reports whether target, an existing directory, is a mount
// point (a Docker volume or a systemd StateDirectory mounted at
// CONFIG_DIR): a rename cannot replace it, so Replace swaps its content
// instead. A bind mount of a directory of the same file system has the
// parent's device; its mount id tells it.
func IsMountPoint(target string) (bool, error) {
	parent := filepath.Dir(target)
	if parent == target {
		return true, nil // "/"
	}
	var ts, ps syscall.Stat_t
	if err := syscall.Stat(target, &ts); err != nil {
		return false, err
	}
	if err := syscall.Stat(parent, &ps); err != nil {
		return false, err
	}
	if ts.Dev != ps.Dev {
		return true, nil
	}
	tm, ok1 := mountID(target)
	pm, ok2 := mountID(parent)
	return ok1 && ok2 && tm != pm, nil
}

// Target names the directory the staging directory replaces.
func (s *staging) Target() string { return s.target }

// Mkdir makes a directory of the staged state, 0700 until finish.
func (s *staging) Mkdir(name string, perm fs.FileMode) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Mkdir(p, DirMode); err != nil {
		return err
	}
	s.dirs = append(s.dirs, stagedDir{name, perm})
	return nil
}

// Create makes a file of the staged state with its final mode; it is
// synced when closed, so that the swap publishes durable content.
func (s *staging) Create(name string, perm fs.FileMode) (io.WriteCloser, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	// Explicitly: the umask must not decide the mode.
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return nil, err
	}
	return stagedFile{f}, nil
}

// path is the staged file of a store name.
func (s *staging) path(name string) (string, error) {
	d := Dir{root: s.dir}
	return d.path(name)
}

type stagedFile struct{ f *os.File }

func (w stagedFile) Write(p []byte) (int, error) { return w.f.Write(p) }
func (w stagedFile) Close() error                { return errors.Join(w.f.Sync(), w.f.Close()) }

// finish gives the staged directories their modes (children first, since
// a restrictive mode could block writing into one) and syncs them.
func (s *staging) finish() error {
	dirs := slices.Clone(s.dirs)
	slices.SortFunc(dirs, func(a, b stagedDir) int { return strings.Compare(b.name, a.name) })
	for _, d := range dirs {
		p := filepath.Join(s.dir, filepath.FromSlash(d.name))
		if err := os.Chmod(p, d.perm); err != nil {
			return err
		}
		if err := syncDir(p); err != nil {
			return err
		}
	}
	return syncDir(s.dir)
}

// discard is the Staging of a dry run: it checks and keeps nothing.
type discard string

func (t discard) Target() string                { return string(t) }
func (discard) Mkdir(string, fs.FileMode) error { return nil }
func (discard) Create(string, fs.FileMode) (io.WriteCloser, error) {
	return nopCloser{io.Discard}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// swapIn puts the staged state at target. An existing target is exchanged
// with it in one rename while holding its lock, so that no p2ptls command
// is half-way through a change; the old state then moves to
// <target>.pre-restore-<time>, or is removed when Check does not keep it.
// It returns where the old state is kept and warnings.
func swapIn(ctx context.Context, d *Dir, target string, st *staging, exists bool, opts ReplaceOptions) (string, []string, error) {
	staged := st.dir
	// A new revision makes a running serve reload everything.
	rev := fmt.Sprintf("%d %d restore\n", opts.Now.UnixNano(), os.Getpid())
	if err := WriteFileAtomic(filepath.Join(staged, RevisionFile), []byte(rev), SecretMode); err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(staged))
	}
	parent := filepath.Dir(target)
	if !exists {
		if err := st.unmark(); err != nil {
			return "", nil, errors.Join(err, os.RemoveAll(staged))
		}
		if err := Commit(func() error { return os.Rename(staged, target) }); err != nil {
			return "", nil, errors.Join(fault.Failf("if another process created it meanwhile, restore again with --force to replace it; otherwise fix what the error names and restore again",
				"cannot move the restored state to %s: %v", target, err), os.RemoveAll(staged))
		}
		return "", nil, syncDir(parent)
	}
	unlockOld, err := d.Lock(ctx, "restore")
	if err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(staged))
	}
	// The state may have changed while the archive was read.
	keep := false
	if opts.Check != nil {
		keep, err = opts.Check(ctx, d)
	}
	if err == nil {
		err = copyRun(target, staged)
	}
	// Lock the staged state too: after the exchange its lock file is the
	// one at the target path, so no other process can lock the new state
	// before both unlocks ran, and each unlock removes a lock file that is
	// still its own.
	var unlockNew func() error
	if err == nil {
		unlockNew, err = OpenDir(staged, 0).Lock(ctx, "restore")
	}
	if err == nil {
		err = st.unmark()
	}
	var kept string
	var warns []string
	if err == nil {
		// The exchange and what follows it are one commit: a restore told
		// to stop by a signal finishes them before it exits, so the old
		// state is kept aside under its name, not left in the staging
		// directory.
		err = Commit(func() error {
			if err := swap(target, staged); err != nil {
				return err
			}
			kept, warns = afterSwap(parent, target, staged, keep, opts.Now, unlockOld, unlockNew)
			return nil
		})
	}
	if err != nil {
		if unlockNew != nil {
			_ = unlockNew()
		}
		_ = unlockOld()
		return "", nil, errors.Join(err, os.RemoveAll(staged))
	}
	return kept, warns, nil
}

// afterSwap finishes a restore whose exchange is done: what fails now is
// reported, not undone. The old state, now at staged, is kept aside as
// <target>.pre-restore-<time>, or removed.
func afterSwap(parent, target, staged string, keep bool, now time.Time, unlockOld, unlockNew func() error) (string, []string) {
	var warns []string
	warn := func(err error) {
		if err != nil {
			warns = append(warns, err.Error())
		}
	}
	warn(syncDir(parent))
	warn(unlockOld())
	warn(unlockNew())
	if !keep {
		warn(os.RemoveAll(staged))
		return "", warns
	}
	kept, err := keepAside(staged, target, now)
	if err != nil {
		return staged, append(warns, fmt.Sprintf("the previous state is in %s: %v", staged, err))
	}
	warn(syncDir(parent))
	return kept, warns
}

// keepAside renames the old state to <target>.pre-restore-<UTC time>, with a
// counter when a restore in the same second already used that name.
func keepAside(old, target string, now time.Time) (string, error) {
	base := target + ".pre-restore-" + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name, os.Rename(old, name)
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// copyRun carries serve's runtime status over, so that "p2ptls status"
// keeps seeing a running serve across the swap.
func copyRun(from, to string) error {
	src := filepath.Join(from, RunDir)
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dst := filepath.Join(to, RunDir)
	if err := MkdirAll(dst); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || IsTempName(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // serve replaced it meanwhile
		}
		if err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(dst, e.Name()), b, SecretMode); err != nil {
			return err
		}
	}
	return nil
}

// errNoExchange says that exchange is not available here.
var errNoExchange = errors.New("atomic exchange of directories is not supported")

// swap exchanges target and staged. Where the kernel or filesystem cannot
// exchange atomically it falls back to two renames, with a moment in which
// target does not exist.
func swap(target, staged string) error {
	err := exchange(target, staged)
	if !errors.Is(err, errNoExchange) {
		return err
	}
	return renameSwap(target, staged)
}

// renameSwap exchanges target and staged with two renames, going back
// when the second fails.
func renameSwap(target, staged string) error {
	aside := staged + ".old"
	if err := os.Rename(target, aside); err != nil {
		return err
	}
	if err := os.Rename(staged, target); err != nil {
		return errors.Join(err, os.Rename(aside, target))
	}
	return os.Rename(aside, staged)
}
