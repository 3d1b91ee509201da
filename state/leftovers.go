package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/p2pstream/p2ptls/state/hostname"
)

// MappingsDir holds one directory per mapping, named by its id
// (certs/public/<id>/: certificate, key, meta.toml).
const MappingsDir = "certs/public"

// IsTempName reports whether base is a temporary name, ".NAME.tmp-DIGITS":
// a file of WriteFileAtomic, a file Apply staged, or what Apply put aside
// (a file or a directory). A finished write renamed or removed it, so one
// that is still there, with no journal naming it, belongs to a writer that
// was killed.
func IsTempName(base string) bool {
	i := strings.LastIndex(base, ".tmp-")
	if !strings.HasPrefix(base, ".") || i < 1 || i+5 == len(base) {
		return false
	}
	return strings.Trim(base[i+5:], "0123456789") == ""
}

// Leftovers are what a writer killed in the middle of a change leaves in
// the state: mapping directories (with keys) that no mapping in
// p2ptls.toml names, and temporary files of atomic writes.
type Leftovers struct {
	// Orphans are store names, "certs/public/<id>".
	Orphans []string
	// TempFiles are store names of temporary files, and of directories an
	// Apply put aside.
	TempFiles []string
	// Unchecked says why orphans were not looked for (p2ptls.toml does not
	// load), "" when they were.
	Unchecked string
	// Pending is set when a committed change is not finished (JournalFile
	// exists): its temporary files are not leftovers and are not listed,
	// and orphans are not looked for, since the change may name them. The
	// next Lock finishes it.
	Pending bool
}

// FindLeftovers lists the leftovers under root. Only a process holding the
// lock may take them for leftovers: a writer in the middle of a change
// has its temporary files and, for mapping add, the new mapping's
// directory before p2ptls.toml names it. run/ is left out: serve writes it
// without the lock.
func FindLeftovers(ctx context.Context, s Store, root string) (Leftovers, error) {
	return FindLeftoversWith(ctx, s, root, func() (*Config, error) { return LoadConfig(ctx, s) })
}

// FindLeftoversWith is FindLeftovers with the desired state from load, for
// a caller that has loaded it already (doctor: a second load of 100k
// records costs seconds).
func FindLeftoversWith(ctx context.Context, s Store, root string, load func() (*Config, error)) (Leftovers, error) {
	var temps []TempEntry
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if de.IsDir() && (rel == RunDir || IsRestoreEntry(rel)) {
			return fs.SkipDir // a restore's directories are not the state's
		}
		if p != root && IsTempName(de.Name()) {
			temps = append(temps, TempEntry{Name: rel, Dir: de.IsDir()})
			if de.IsDir() {
				return fs.SkipDir // put aside as a whole
			}
		}
		return nil
	})
	if err != nil {
		return tempLeftovers(root, temps), fmt.Errorf("look for temporary files in %s: %w", root, err)
	}
	return FindLeftoversIn(ctx, s, root, temps, load)
}

// TempEntry is an entry of the state directory with a temporary name
// (IsTempName of its base), as a walk found it.
type TempEntry struct {
	Name string // store name
	Dir  bool
}

// FindLeftoversIn is FindLeftoversWith for a caller that walked the whole
// state directory itself (doctor walks it once for the file modes too):
// temps are every entry with a temporary name the walk found, in the
// order of filepath.WalkDir, anywhere. Those under run/ (serve writes it
// without the lock) or inside a temporary directory (put aside as a
// whole) are not leftovers of their own.
func FindLeftoversIn(ctx context.Context, s Store, root string, temps []TempEntry, load func() (*Config, error)) (Leftovers, error) {
	return findLeftoversIn(ctx, s, root, temps, load, func() ([]string, error) { return s.List(ctx, MappingsDir) })
}

// findLeftoversIn is FindLeftoversIn with the names in MappingsDir from
// list (sorted).
func findLeftoversIn(ctx context.Context, s Store, root string, temps []TempEntry, load func() (*Config, error), list func() ([]string, error)) (Leftovers, error) {
	l := tempLeftovers(root, temps)
	if l.Pending {
		return l, nil
	}
	cfg, err := load()
	if err != nil {
		l.Unchecked = err.Error()
		return l, nil
	}
	ids := make(map[string]bool, len(cfg.Mappings))
	for _, m := range cfg.Mappings {
		ids[m.ID] = true
	}
	names, err := list()
	if err != nil {
		return l, fmt.Errorf("list %s: %w", MappingsDir, err)
	}
	for _, n := range names {
		// Only what p2ptls would have written: a directory named like an id.
		if ids[n] || hostname.ValidateName("mapping id", n) != nil {
			continue
		}
		if info, err := s.Stat(ctx, MappingsDir+"/"+n); err == nil && info.IsDir() {
			l.Orphans = append(l.Orphans, MappingsDir+"/"+n)
		}
	}
	// A temporary file inside an orphan goes with it.
	kept := l.TempFiles[:0]
	for _, tmp := range l.TempFiles {
		if !slices.ContainsFunc(l.Orphans, func(o string) bool { return strings.HasPrefix(tmp, o+"/") }) {
			kept = append(kept, tmp)
		}
	}
	l.TempFiles = kept
	return l, nil
}

// tempLeftovers are the temporary files among temps (see FindLeftoversIn)
// that no committed change's journal names, and whether one is pending.
func tempLeftovers(root string, temps []TempEntry) Leftovers {
	var l Leftovers
	var journaled map[string]bool
	journaled, l.Pending = journalNames(root)
	var aside string // the last temporary directory: what is below it goes with it
	for _, t := range temps {
		top, _, _ := strings.Cut(t.Name, "/")
		if strings.HasPrefix(t.Name, RunDir+"/") || (aside != "" && strings.HasPrefix(t.Name, aside)) || (top != t.Name && IsRestoreEntry(top)) {
			continue // what a restore stages or keeps is its own
		}
		if t.Dir {
			aside = t.Name + "/"
		}
		if !journaled[t.Name] {
			l.TempFiles = append(l.TempFiles, t.Name)
		}
	}
	return l
}

// removeLeftovers removes what a killed writer left, under the lock just
// taken over from it. It is called only then (claim found the dead
// holder's record), so that a mutation does not pay a walk of the whole
// state every time: a writer that finishes or fails leaves nothing, one
// that is killed always leaves its lock record. A problem is logged, never
// a reason to refuse the change the caller is about to make.
func (d *Dir) removeLeftovers(ctx context.Context) {
	if _, err := os.Lstat(filepath.Join(d.root, JournalFile)); err == nil {
		// The dead holder committed a change it did not finish: its
		// staged files are that change's. finishOnLock finishes it and
		// then calls this again.
		d.leftoversHeld.Store(true)
		return
	}
	l, err := FindLeftovers(ctx, d, d.root)
	if err != nil {
		slog.Warn("cannot look for what an interrupted change left", "err", err)
	}
	if l.Unchecked != "" {
		slog.Warn("not looking for orphan mapping directories: p2ptls.toml does not load", "err", l.Unchecked)
	}
	removed := 0
	for _, name := range append(l.Orphans, l.TempFiles...) {
		if err := d.Delete(ctx, name); err != nil {
			slog.Warn("cannot remove what an interrupted change left", "path", path.Join(d.root, name), "err", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		slog.Info("removed what an interrupted change left", "orphan_mapping_dirs", len(l.Orphans), "temp_files", len(l.TempFiles))
	}
}

// staleHolder reports whether the lock file at p, which this process has
// just flocked, still holds the record of an earlier holder: a holder that
// unlocks removes the file, so a record that survives belongs to a process
// that died while it held the lock.
func staleHolder(p string) bool {
	_, err := os.Stat(p)
	return err == nil && readHolder(p).PID != 0
}
