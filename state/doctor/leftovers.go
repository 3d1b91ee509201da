package doctor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/p2pstream/p2ptls/state"
)

// checkOrphans: what a writer killed in the middle of a change left: mapping
// directories (with their keys) that no mapping in p2ptls.toml names, and
// temporary files of atomic writes. Nothing serves or reads them, but an
// orphan keeps a private key on disk. The next change after a crash removes
// them by itself (it notices the dead holder's lock record); doctor reports
// them with the command that removes them now. While the lock is held they
// are not looked for: a change in progress has its temporary files and, for
// mapping add, the new mapping's directory before p2ptls.toml names it.
//
// A change that a crash cut short after committing it (state.JournalFile)
// is not a leftover: its staged files are listed in the journal, and the
// next p2ptls command that takes the lock finishes it. Doctor reports it
// and lists nothing else until then, since the change may name what looks
// orphaned now.
func checkOrphans(ctx context.Context, e *env) Check {
	if e.local == nil {
		return notApplicable(IDOrphans, "leftovers are a directory's files")
	}
	if e.root == "" {
		return ok(IDOrphans, "there is no state directory yet")
	}
	locked, stale := lockState(e.root)
	if locked {
		return ok(IDOrphans, "not checked: a change is in progress (the state is locked), and its files are not leftovers")
	}
	load := func() (*state.Config, error) {
		if e.cfgErr != nil { // the error FindLeftovers would get by loading it
			return nil, e.cfgErr
		}
		return e.cfg, nil
	}
	// The temporary files are those the walk of checkPermissions found;
	// when it could not read everything, FindLeftoversWith walks again
	// (it skips run/) and says what it could not read.
	var l state.Leftovers
	scan, err := e.tree()
	if err == nil {
		// The walk has read certs/public: not again (100k names).
		if names, ok := scan.publicNames(); ok {
			l, err = state.FindLeftoversListed(ctx, e.s, e.root, scan.temps, load, names)
		} else {
			l, err = state.FindLeftoversIn(ctx, e.s, e.root, scan.temps, load)
		}
	} else {
		l, err = state.FindLeftoversWith(ctx, e.s, e.root, load)
	}
	if err != nil {
		return warn(IDOrphans, "check that this user can read the whole state directory", "%v", err)
	}
	if l.Pending {
		return warn(IDOrphans, "run any p2ptls command that changes the state (or p2ptls backup): it finishes the change first; do not remove its temporary files by hand",
			"a change was cut short after it was committed: %s lists what is left to do, and its temporary files are not leftovers",
			filepath.Join(e.root, state.JournalFile))
	}
	var items, paths []string
	for _, o := range l.Orphans {
		p := filepath.Join(e.root, filepath.FromSlash(o))
		what := o
		if _, err := os.Stat(filepath.Join(p, "key.pem")); err == nil {
			what += " (with a private key)"
		}
		items = append(items, what)
		paths = append(paths, p)
	}
	for _, tmp := range l.TempFiles {
		p := filepath.Join(e.root, filepath.FromSlash(tmp))
		// The walk was made while the config and mappings loaded: a
		// writer that held the lock then and has finished since renamed
		// or removed its temporary files, which are not leftovers.
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		items = append(items, tmp)
		paths = append(paths, p)
	}
	unchecked := ""
	if l.Unchecked != "" {
		unchecked = "; orphan mapping directories are not looked for while " + state.ConfigFile + " does not load (see " + IDConfig + ")"
	}
	if len(items) == 0 {
		if unchecked != "" {
			return warn(IDOrphans, "fix "+state.ConfigFile+" first", "no temporary files left by an interrupted change%s", unchecked)
		}
		return ok(IDOrphans, "no orphan mapping directories or temporary files: every directory under %s belongs to a mapping", state.MappingsDir)
	}
	hint := "remove each of them with rm -rf: nothing uses them (no mapping names these directories, and no write is in progress)"
	if len(paths) <= 5 {
		hint = "run: rm -rf " + strings.Join(quoteAll(paths), " ")
	}
	if stale {
		hint += "; or make any change with p2ptls: it removes them when it takes over the stale lock"
	}
	return warn(IDOrphans, hint, "%s left by an interrupted change: %s%s", plural(len(items), "leftover"), names(items), unchecked)
}

// lockState reports whether a process holds the state lock now, and
// whether a lock file with a dead holder's record is there (stale).
func lockState(root string) (locked, stale bool) {
	f, err := os.Open(filepath.Join(root, state.LockFile))
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return false, false
	}
	defer f.Close()
	// A shared flock succeeds exactly when nobody holds the exclusive one.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK), false
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	info, err := f.Stat()
	return false, err == nil && info.Size() > 0
}

// quoteAll quotes paths for a shell line when they need it.
func quoteAll(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		if strings.ContainsAny(p, " '\"\\$`!*?[]{}()<>|;&#~\t\n") {
			p = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
		}
		out[i] = p
	}
	return out
}
