package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// A restore into a mount point (a Compose volume at /data, a systemd
// StateDirectory) cannot rename the directory, so it replaces its content,
// entry by entry, under a journal:
//
//  1. the archive is extracted into <dir>/.p2ptls-restore-<random>/ (same
//     file system; marked and flocked like a staging directory beside);
//  2. under the state's lock, SwapJournalFile is written atomically: it
//     names the staging directory, the directory the old entries go to
//     (<dir>/.p2ptls-old-<random>/), where the old state is kept (or that
//     it is removed) and every top-level entry to move either way. Before
//     it exists nothing of the state was touched (a kill leaves the old
//     state); once it exists the swap is decided and only goes forward;
//  3. the old entries move into the old directory, the new ones into
//     <dir>, and last the new p2ptls.rev over the old (one rename, which a
//     running serve's watch reads as "everything changed": until then the
//     lock file tells it a change is under way and it holds back);
//  4. the old directory becomes <dir>/pre-restore-<time>/ or is removed,
//     the staging directory is removed, and the journal last.
//
// Each step is idempotent (a rename is done when its source is gone or
// its destination there), so the next Lock (any p2ptls command, serve's
// start) redoes whatever is left (finishContentSwap). The lock file, run/
// (serve's runtime status, which serve writes without the lock) and
// lost+found stay where they are.
const (
	// SwapJournalFile is the journal of a content swap.
	SwapJournalFile = "p2ptls.restore-journal"
	// InsideStagingPrefix names the staging directory inside a mount point.
	InsideStagingPrefix = ".p2ptls-restore-"
	// InsideOldPrefix names the directory the old entries move into.
	InsideOldPrefix = ".p2ptls-old-"
	// KeptPrefix names the previous state a forced restore into a mount
	// point keeps inside it: pre-restore-<UTC time>.
	KeptPrefix = "pre-restore-"
)

// swapJournalLimit bounds the journal read: it names top-level entries
// only.
const swapJournalLimit = 1 << 20

// IsRestoreEntry reports whether name, a top-level entry of the state
// directory, belongs to a restore into a mount point rather than to the
// state: backups, leftover walks and the swap itself leave these alone.
func IsRestoreEntry(name string) bool {
	return name == SwapJournalFile || strings.HasPrefix(name, InsideStagingPrefix) ||
		strings.HasPrefix(name, InsideOldPrefix) || strings.HasPrefix(name, KeptPrefix)
}

// stayInPlace are the top-level entries a content swap never moves.
func stayInPlace(name string) bool {
	return name == LockFile || name == RunDir || name == RevisionFile || name == "lost+found" ||
		name == RestoreStagingMarker || IsRestoreEntry(name)
}

// swapJournal is the content of SwapJournalFile. Names are base names of
// entries of the state directory.
type swapJournal struct {
	Version    int      `json:"version"`
	Staged     string   `json:"staged"`
	Old        string   `json:"old"`
	Kept       string   `json:"kept,omitempty"` // "": the old state is removed
	OldEntries []string `json:"old_entries"`
	NewEntries []string `json:"new_entries"`
	Revision   bool     `json:"revision"` // the staging directory has a p2ptls.rev
	// Phase is "swap" until every entry is in place, then "tidy": from
	// then on the old directory may be half removed, and its entries must
	// not be taken for ones still to move.
	Phase string `json:"phase"`
}

const (
	phaseSwap = "swap"
	phaseTidy = "tidy"
)

// swapStep, when set by a test, is called after each step of a content
// swap, so that a kill test can stop it at every one.
var swapStep func(step string)

func stepped(s string) {
	if swapStep != nil {
		swapStep(s)
	}
}

// validName reports whether n is a plain base name (no separator, not
// "." or ".."): a journal must not move anything out of the directory.
func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, `/\`) && !strings.ContainsRune(n, 0)
}

func (j *swapJournal) validate() error {
	if j.Version != 1 {
		return fmt.Errorf("version %d, not 1", j.Version)
	}
	if j.Phase != phaseSwap && j.Phase != phaseTidy {
		return fmt.Errorf("the phase %q", j.Phase)
	}
	if !validName(j.Staged) || !strings.HasPrefix(j.Staged, InsideStagingPrefix) ||
		!validName(j.Old) || !strings.HasPrefix(j.Old, InsideOldPrefix) ||
		(j.Kept != "" && (!validName(j.Kept) || !strings.HasPrefix(j.Kept, KeptPrefix))) {
		return errors.New("it names directories that are not a restore's")
	}
	for _, n := range append(slices.Clone(j.OldEntries), j.NewEntries...) {
		if !validName(n) || stayInPlace(n) {
			return fmt.Errorf("it names the entry %q, which a restore does not move", n)
		}
	}
	return nil
}

// readSwapJournal reads root's swap journal; nil when there is none.
func readSwapJournal(root string) (*swapJournal, error) {
	f, err := os.Open(filepath.Join(root, SwapJournalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, swapJournalLimit))
	if err != nil {
		return nil, err
	}
	var j swapJournal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s is not a restore's journal: %w", SwapJournalFile, err)
	}
	if err := j.validate(); err != nil {
		return nil, fmt.Errorf("%s is not a restore's journal: %w", SwapJournalFile, err)
	}
	return &j, nil
}

// replaceContents is Replace for a target that is a mount point: the
// archive is staged inside it and swapped in entry by entry (see above).
func (d *Dir) replaceContents(ctx context.Context, target string, fill func(Staging) error, opts ReplaceOptions, warn func(string)) (*Replaced, error) {
	st, err := makeStaging(target, true)
	if err != nil {
		return nil, err
	}
	defer st.release()
	staged := st.dir
	swapping := false // from the journal on, the staging directory is the swap's
	defer func() {
		if !swapping {
			_ = removeStaging(staged)
		}
	}()
	if err := fill(st); err != nil {
		return nil, err
	}
	if err := st.finish(); err != nil {
		return nil, err
	}
	// A new revision makes a running serve reload everything.
	rev := fmt.Sprintf("%d %d restore\n", opts.Now.UnixNano(), os.Getpid())
	if err := WriteFileAtomic(filepath.Join(staged, RevisionFile), []byte(rev), SecretMode); err != nil {
		return nil, err
	}
	stepped("staged")
	unlock, err := d.Lock(ctx, "restore") // finishes a swap a dead restore left
	if err != nil {
		return nil, err
	}
	keep := false
	if opts.Check != nil {
		keep, err = opts.Check(ctx, d)
	}
	var j *swapJournal
	if err == nil {
		j, err = planSwap(target, staged, keep, opts.Now)
	}
	if err == nil {
		// From the journal on the swap only goes forward: a restore told
		// to stop by a signal finishes it before it exits.
		err = Commit(func() error {
			if err := writeSwapJournal(target, j); err != nil {
				return err
			}
			swapping = true
			stepped("journaled")
			if err := runSwap(target, j); err != nil {
				return fault.Failf("fix what the error names; the next p2ptls command finishes the restore",
					"the restore into %s stopped while swapping the state in: %v", target, err)
			}
			return nil
		})
	}
	err = errors.Join(err, unlock())
	if err != nil {
		return nil, err
	}
	kept := ""
	if j.Kept != "" {
		kept = filepath.Join(target, j.Kept)
	}
	return &Replaced{Kept: kept}, nil
}

// planSwap lists what the swap moves and names its directories.
func planSwap(target, staged string, keep bool, now time.Time) (*swapJournal, error) {
	rnd := strings.TrimPrefix(filepath.Base(staged), InsideStagingPrefix)
	j := &swapJournal{Version: 1, Phase: phaseSwap, Staged: filepath.Base(staged), Old: InsideOldPrefix + rnd}
	var err error
	if j.OldEntries, err = movable(target); err != nil {
		return nil, err
	}
	if j.NewEntries, err = movable(staged); err != nil {
		return nil, err
	}
	// serve reads p2ptls.toml to know what to serve: out first, in last
	// (before p2ptls.rev), so that a reader never finds it beside a
	// half-moved state.
	sortConfigLast(j.NewEntries)
	slices.Reverse(j.OldEntries)
	sortConfigLast(j.OldEntries)
	slices.Reverse(j.OldEntries)
	if _, err := os.Lstat(filepath.Join(staged, RevisionFile)); err == nil {
		j.Revision = true
	}
	if keep {
		base := KeptPrefix + now.UTC().Format("20060102T150405Z")
		j.Kept = base
		for i := 2; ; i++ {
			if _, err := os.Lstat(filepath.Join(target, j.Kept)); errors.Is(err, fs.ErrNotExist) {
				break
			}
			j.Kept = fmt.Sprintf("%s-%d", base, i)
		}
	}
	return j, nil
}

// sortConfigLast moves p2ptls.toml to the end of names.
func sortConfigLast(names []string) {
	if i := slices.Index(names, ConfigFile); i >= 0 {
		copy(names[i:], names[i+1:])
		names[len(names)-1] = ConfigFile
	}
}

// movable lists the top-level entries of dir that a swap moves.
func movable(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !stayInPlace(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// runSwap does, or finishes, the swap j describes in root.
func runSwap(root string, j *swapJournal) error {
	old := filepath.Join(root, j.Old)
	staged := filepath.Join(root, j.Staged)
	if j.Phase == phaseSwap {
		if err := moveEntries(root, old, staged, j); err != nil {
			return err
		}
		// Every entry is in place: the journal says so before the old
		// directory goes, whose entries would otherwise look unmoved.
		j.Phase = phaseTidy
		if err := writeSwapJournal(root, j); err != nil {
			return err
		}
		stepped("swapped")
	}
	// The state is the new one now: what follows only tidies.
	if j.Kept != "" {
		if err := renameIfThere(old, filepath.Join(root, j.Kept)); err != nil {
			return err
		}
	} else if err := os.RemoveAll(old); err != nil {
		return err
	}
	stepped("old state")
	if err := os.RemoveAll(staged); err != nil {
		return err
	}
	if err := syncDir(root); err != nil {
		return err
	}
	stepped("staging removed")
	if err := os.Remove(filepath.Join(root, SwapJournalFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syncDir(root); err != nil {
		return err
	}
	stepped("done")
	return nil
}

// moveEntries moves the old entries into old and the new ones from
// staged into root, skipping what an earlier run moved already.
func moveEntries(root, old, staged string, j *swapJournal) error {
	if err := os.Mkdir(old, DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	for _, e := range j.OldEntries {
		// Moved when it is in the old directory: the same name at root
		// may be the new entry already.
		if _, err := os.Lstat(filepath.Join(old, e)); err == nil {
			continue
		}
		if err := renameIfThere(filepath.Join(root, e), filepath.Join(old, e)); err != nil {
			return err
		}
		stepped("moved out " + e)
	}
	if err := errors.Join(syncDir(old), syncDir(root)); err != nil {
		return err
	}
	moveIn := j.NewEntries
	if j.Revision {
		moveIn = append(slices.Clone(moveIn), RevisionFile)
	}
	for _, n := range moveIn {
		if err := renameIfThere(filepath.Join(staged, n), filepath.Join(root, n)); err != nil {
			return err
		}
		stepped("moved in " + n)
	}
	return errors.Join(syncDir(staged), syncDir(root))
}

// writeSwapJournal writes j to root's journal, atomically and durably.
// It is written in the staging directory first and renamed into root, so
// that a kill mid-write leaves its temporary file in the staging (which
// goes with it), never a stray file in the state.
func writeSwapJournal(root string, j *swapJournal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	staged := filepath.Join(root, j.Staged)
	if err := WriteFileAtomic(filepath.Join(staged, SwapJournalFile), append(b, '\n'), SecretMode); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(staged, SwapJournalFile), filepath.Join(root, SwapJournalFile)); err != nil {
		return err
	}
	return errors.Join(syncDir(root), syncDir(staged))
}

// renameIfThere renames from to to; a from that is gone was renamed by an
// earlier run of the same swap.
func renameIfThere(from, to string) error {
	if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return os.Rename(from, to)
}

// finishContentSwap finishes, under the lock just taken, the swap of a
// restore into a mount point that died after its journal was written, so
// that nothing reads or changes a half-swapped state.
func (d *Dir) finishContentSwap() error {
	j, err := readSwapJournal(d.root)
	if j == nil && err == nil {
		return nil
	}
	hint := "look at " + filepath.Join(d.root, SwapJournalFile) + " and the directories it names; to give up the restore, move the entries of the old directory back and remove the journal"
	if err != nil {
		return fault.Failf(hint, "a restore into %s was interrupted and its journal cannot be read: %v", d.root, err)
	}
	if err := Commit(func() error { return runSwap(d.root, j) }); err != nil {
		return fault.Failf(hint, "a restore into %s was interrupted while swapping the state in, and finishing it failed: %v", d.root, err)
	}
	slog.Info("finished a restore that was interrupted while swapping the state in", "dir", d.root, "staged", j.Staged)
	return nil
}

type noSettleKey struct{}

// WithoutSettle marks ctx as a reader's that never takes the lock (doctor):
// it reads a state whose swap was cut short as it finds it, and reports
// the swap (state.restore_staging) instead of finishing it.
func WithoutSettle(ctx context.Context) context.Context {
	return context.WithValue(ctx, noSettleKey{}, true)
}

// SettleSwap is settleSwap for a command about to run on s, whatever it
// reads (ca show reads certs/management alone); only a directory swaps.
func SettleSwap(ctx context.Context, s Store) error { return settleSwap(ctx, s) }

// settleSwap lets a reader of a state directory (a read-only command,
// serve's reload) that finds a content swap's journal take the lock: that
// finishes a swap whose restore died, or waits for the restore still
// doing it, so that nothing reads a half-swapped state. Without a journal
// it costs one stat.
func settleSwap(ctx context.Context, s Reader) error {
	d, ok := s.(*Dir)
	if !ok || ctx.Value(noSettleKey{}) != nil {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(d.root, SwapJournalFile)); err != nil {
		return nil
	}
	unlock, err := d.Lock(ctx, "finish an interrupted restore")
	if err != nil {
		return fmt.Errorf("a restore into %s is swapping the state in: %w", d.root, err)
	}
	return unlock()
}
