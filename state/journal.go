package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/p2pstream/p2ptls/state/fault"
)

// JournalFile lists the steps of a change that Dir.Apply has committed to
// but not finished. Its appearance (one atomic rename, after every new file
// is staged and synced) is the commit point of the change; it is removed
// once every step is done. A journal found when the lock is taken belongs
// to a holder that died in the middle, and is rolled forward.
//
// Apply, in order:
//
//  1. stage: every write becomes a synced temporary file (".NAME.tmp-N",
//     the name WriteFileAtomic uses) in its target's directory; the writes
//     below a directory that is not there when the renames begin (new, or
//     removed by a delete of the same change) become one synced temporary
//     tree (".DIR.tmp-N", in that directory's parent) holding them under
//     their own names, renamed as a whole; a change of wholeSyncMin
//     files or more is synced by syncfs(2) of the file system instead
//     of an fsync of each file and directory (wholeFSFor); the journal
//     (0600) is staged and synced with them, as a temporary file in
//     the root;
//  2. commit: rename the journal into place and sync the root;
//  3. delete: rename each deleted file or directory aside to a temporary
//     name in its directory;
//  4. rename each staged file and tree to its name;
//  5. clean up: remove what was put aside, then the journal (unsynced:
//     the next sync of the root covers it, and a journal brought back
//     by a crash before then rolls as nothing).
//
// Every step of 3-5 can be done again after a crash part-way through it:
// a delete whose aside name exists is done; a staged file or tree that is
// gone was renamed; removing what is gone is no error. Deletes are done
// again only while the first staged file or tree is still there, since
// once the renames have begun a delete's name may hold the new one. A
// crash before the journal exists leaves temporary files and trees, which
// the next lock after the dead holder removes (removeLeftovers).
//
// Readers that do not take the lock (serve, shell completion) may see the
// change half-applied for the moment steps 3-5 take; the revision written
// when the lock is released (RevisionFile) tells serve to read again after
// it.
const JournalFile = "p2ptls.journal"

// journalVersion is the only journal format this build writes and reads.
const journalVersion = 1

// journal is the content of JournalFile. Names are store names.
type journal struct {
	Version int             `json:"version"`
	Deletes []journalDelete `json:"deletes"`
	Writes  []journalWrite  `json:"writes"`
}

type journalDelete struct {
	Name  string `json:"name"`
	Aside string `json:"aside"`
}

type journalWrite struct {
	Temp string `json:"temp"`
	Name string `json:"name"`
}

// applyStep, when set by a test, is called between the steps of an Apply
// and of a recovery, so that a test can kill the process at each of them.
var applyStep func(step string)

func step(s string) {
	if applyStep != nil {
		applyStep(s)
	}
}

// Apply makes every delete and write of c as one crash-atomic change (see
// JournalFile): after a crash, the next Lock leaves the state exactly as it
// was or exactly as c makes it. Deletes come first, so c may replace a
// directory. The whole Apply is one commit for interrupt handling: it is
// refused when ctx is done before it starts, and finished once begun.
func (d *Dir) Apply(ctx context.Context, c Change) error {
	if c.Empty() {
		return nil
	}
	for _, name := range c.Deletes {
		if err := noteChange(ctx, d, name); err != nil {
			return err
		}
	}
	for _, w := range c.Writes {
		if err := noteChange(ctx, d, w.Name); err != nil {
			return err
		}
	}
	// A change this lock holder could not finish goes first: the journal
	// holds one change at a time.
	if _, err := d.finishJournal(); err != nil {
		return err
	}
	p, err := d.plan(c)
	if err != nil {
		return err
	}
	for _, name := range p.deletes {
		d.counted(name)
	}
	for _, w := range p.writes {
		d.counted(w.Name)
	}
	j, journalTemp, err := d.stage(p)
	if err != nil {
		return err
	}
	step("staged")
	// The commit point: the journal, staged and synced with the rest, is
	// renamed into place and the root synced.
	err = os.Rename(journalTemp, filepath.Join(d.root, JournalFile))
	if err == nil {
		err = syncDir(d.root)
	}
	if err != nil {
		_ = os.Remove(journalTemp)
		for _, w := range j.Writes {
			_ = os.RemoveAll(d.abs(w.Temp))
		}
		return fmt.Errorf("commit the change: %w", err)
	}
	step("committed")
	if err := d.roll(j, true); err != nil {
		return fmt.Errorf("finish the change (it is committed: the next p2ptls command that takes the lock finishes it): %w", err)
	}
	return nil
}

// applyPlan is a checked Change: deletes without those inside another
// delete, writes without duplicates (the last write of a name wins, at
// the place of its first), each with the new directory it is staged in.
type applyPlan struct {
	deletes []string
	writes  []FileWrite
	// tree of each write is the directory above it nearest the root that
	// is not there when the renames begin (missing, or deleted by the
	// change), "" when there is none. All the writes below one are staged
	// as one temporary tree, under their own names, renamed into place
	// at once: an import of 10k mappings into an empty state renames two
	// directories, not 40k files, and a reader never sees half of a new
	// mapping's directory. The other writes are staged as temporary files
	// in their own directory.
	tree []string
	// stageIn is each write's staging directory (store name, "" for the
	// root), set by stage.
	stageIn []string
	// lone are the staged trees that are one staging directory (a new
	// mapping's directory in an existing certs/public, a new mappings/),
	// which stageFiles makes with their files, on the core that writes
	// them; stage makes the others before. made lists those made so far,
	// the only ones removed when staging fails.
	lone map[string]bool
	made madeTrees
}

// madeTrees are the roots of the staged trees made (store names), added
// to by the workers of stageFiles.
type madeTrees struct {
	mu    sync.Mutex
	roots []string
}

func (m *madeTrees) add(root string) {
	m.mu.Lock()
	m.roots = append(m.roots, root)
	m.mu.Unlock()
}

// mkdirTree makes the staged tree root: under the unused name stage
// picked, never one that is there (that is not this change's to remove).
func (p *applyPlan) mkdirTree(d *Dir, root string) error {
	if err := os.Mkdir(d.abs(root), DirMode); err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	p.made.add(root)
	return nil
}

// plan checks c before anything is written: names inside the root, no
// write that another write needs as a directory, and no write onto a
// directory or below a file that the change does not delete, so that
// nothing after the commit point fails for a reason known before it.
func (d *Dir) plan(c Change) (*applyPlan, error) {
	p := &applyPlan{}
	var dels []string
	for _, name := range c.Deletes {
		if _, err := d.path(name); err != nil {
			return nil, err
		}
		dels = append(dels, path.Clean(name))
	}
	// Shortest first, so that a delete inside an earlier one is dropped.
	slices.SortStableFunc(dels, func(a, b string) int { return len(a) - len(b) })
	for _, name := range dels {
		if name == JournalFile || name == LockFile {
			return nil, fmt.Errorf("a change cannot delete %s", name)
		}
		if !slices.ContainsFunc(p.deletes, func(del string) bool { return under(name, del) }) {
			p.deletes = append(p.deletes, name)
		}
	}
	at := map[string]int{}
	for _, w := range c.Writes {
		if _, err := d.path(w.Name); err != nil {
			return nil, err
		}
		w.Name = path.Clean(w.Name)
		if under(w.Name, JournalFile) || under(w.Name, LockFile) {
			return nil, fmt.Errorf("a change cannot write %s", w.Name)
		}
		if i, ok := at[w.Name]; ok {
			p.writes[i] = w
			continue
		}
		at[w.Name] = len(p.writes)
		p.writes = append(p.writes, w)
	}
	deleted := func(name string) (string, bool) {
		for _, del := range p.deletes {
			if under(name, del) {
				return del, true
			}
		}
		return "", false
	}
	// What is true of a directory is true for every write below it: each
	// is looked at once, not once per file of a batch of thousands.
	seen := map[string]bool{}
	missing := map[string]bool{} // directories not there: nothing is inside
	for _, w := range p.writes {
		for dir := path.Dir(w.Name); dir != "." && !seen[dir]; dir = path.Dir(dir) {
			seen[dir] = true
			if _, ok := at[dir]; ok {
				return nil, fmt.Errorf("a change cannot write both %s and %s inside it", dir, w.Name)
			}
			if _, gone := deleted(dir); gone {
				break
			}
			info, err := os.Lstat(d.abs(dir))
			if err == nil && !info.IsDir() {
				return nil, fmt.Errorf("cannot write %s: %s is not a directory", w.Name, d.abs(dir))
			}
			missing[dir] = errors.Is(err, fs.ErrNotExist)
		}
		// A file of a new directory has no directory in its way.
		if _, gone := deleted(w.Name); !gone && !missing[path.Dir(w.Name)] {
			if info, err := os.Lstat(d.abs(w.Name)); err == nil && info.IsDir() {
				return nil, fmt.Errorf("cannot write %s: it is a directory", d.abs(w.Name))
			}
		}
	}
	// The tree of a directory is its parent's, or itself when it is the
	// first that is not there. A directory below a delete that the walk
	// above did not look at is not there either way.
	trees := map[string]string{}
	var treeOf func(dir string) string
	treeOf = func(dir string) string {
		if dir == "." {
			return ""
		}
		t, ok := trees[dir]
		if !ok {
			if t = treeOf(path.Dir(dir)); t == "" {
				if _, gone := deleted(dir); gone || missing[dir] {
					t = dir
				}
			}
			trees[dir] = t
		}
		return t
	}
	for _, w := range p.writes {
		p.tree = append(p.tree, treeOf(path.Dir(w.Name)))
	}
	return p, nil
}

// parentName is the store name of name's directory, "" for the root.
func parentName(name string) string {
	if dir := path.Dir(name); dir != "." {
		return dir
	}
	return ""
}

// abs is the file path of a store name already checked by path.
func (d *Dir) abs(name string) string {
	if name == "" {
		return d.root
	}
	return filepath.Join(d.root, filepath.FromSlash(name))
}

// stage writes every file of p, synced, as a temporary file or into a
// temporary tree (see applyPlan), picks the aside name of every delete,
// writes the journal naming them as a temporary file in the root
// (journalTemp, its file path), and syncs all of it (a large change: the
// whole file system, see wholeFSFor), so that the journal, once renamed
// into place, names only durable files. The journal's own fsync runs with
// those of the directories: one wait for the disk fewer before the commit
// point than writing it after. On error it removes what it staged.
func (d *Dir) stage(p *applyPlan) (j *journal, journalTemp string, err error) {
	j = &journal{Version: journalVersion, Deletes: []journalDelete{}, Writes: make([]journalWrite, 0, len(p.writes))}
	temps := make([]string, len(p.writes)) // file path of each staged file, "" until it is
	treeRoot := map[string]string{}        // new directory -> store name of its staged tree
	defer func() {
		if err != nil {
			if journalTemp != "" {
				_ = os.Remove(journalTemp)
				journalTemp = ""
			}
			for i, tmp := range temps {
				if tmp != "" && p.tree[i] == "" {
					_ = os.Remove(tmp)
				}
			}
			for _, root := range p.made.roots {
				_ = os.RemoveAll(d.abs(root))
			}
		}
	}()
	// A large change is made durable by one syncfs of the state's file
	// system, opened before the first write so that it reports every
	// write error since (see wholeFS), instead of one fsync per file and
	// per directory: an import of 10k mappings stages 40k files in 10k
	// directories. A small one keeps its fsyncs, which wait for its own
	// files only, not for whatever else is waiting to be written.
	whole := wholeFSFor(d, p)
	if whole != nil {
		defer whole.close()
	}
	p.stageIn = make([]string, len(p.writes))
	var madeAbove []string // directories MkdirAll may have made, and those above them
	parentThere := map[string]bool{}
	for i, w := range p.writes {
		t := p.tree[i]
		if t == "" {
			p.stageIn[i] = parentName(w.Name)
			continue
		}
		if treeRoot[t] == "" {
			// In the new directory's parent, which is there unless the
			// new directory is the first of several (MkdirAll).
			parent := parentName(t)
			if !parentThere[parent] {
				if _, err := os.Lstat(d.abs(parent)); err != nil {
					if err := MkdirAll(d.abs(parent)); err != nil {
						return j, "", err
					}
					madeAbove = append(madeAbove, parent)
				}
				parentThere[parent] = true
			}
			// Not looked for: mkdirTree refuses one that is there.
			treeRoot[t] = path.Join(parent, tempName(path.Base(t)))
		}
		p.stageIn[i] = treeRoot[t] + strings.TrimPrefix(path.Dir(w.Name), t)
	}
	// Each staged tree that is more than one staging directory is made
	// now; a lone one by stageFiles (10k of them for an import into an
	// existing certs/public: made here, one after the other, they took
	// 0.2 s before the first file was written).
	p.lone = map[string]bool{}
	for _, root := range treeRoot {
		p.lone[root] = true
	}
	for i, t := range p.tree {
		if t != "" && p.stageIn[i] != treeRoot[t] {
			p.lone[treeRoot[t]] = false
		}
	}
	for root, lone := range p.lone {
		if !lone {
			delete(p.lone, root)
			if err := p.mkdirTree(d, root); err != nil {
				return j, "", err
			}
		}
	}
	// The directories that gain an entry, to sync after: each staging
	// directory; for a staged tree every directory of it and the one it
	// was made in; and whatever MkdirAll made, with everything above.
	// Not the directories above those, which hold nothing new: an add
	// into an existing certs/public syncs neither its parent nor the
	// root here.
	dirs := map[string]bool{}
	for i, dir := range p.stageIn {
		dirs[dir] = true
		t := p.tree[i]
		if t == "" {
			continue
		}
		top := parentName(treeRoot[t])
		// Those above a directory already listed are listed up to top.
		for up := dir; up != top; {
			up = parentName(up)
			if dirs[up] {
				break
			}
			dirs[up] = true
		}
	}
	for _, dir := range madeAbove {
		for up := dir; ; up = parentName(up) {
			dirs[up] = true
			if up == "" {
				break
			}
		}
	}
	if err := stageFiles(d, p, temps, whole); err != nil {
		return j, "", err
	}
	inJournal := map[string]bool{}
	for i, w := range p.writes {
		switch t := p.tree[i]; {
		case t == "":
			j.Writes = append(j.Writes, journalWrite{Temp: path.Join(p.stageIn[i], filepath.Base(temps[i])), Name: w.Name})
		case !inJournal[t]:
			inJournal[t] = true
			j.Writes = append(j.Writes, journalWrite{Temp: treeRoot[t], Name: t})
		}
	}
	for _, name := range p.deletes {
		aside, err := unusedName(d.abs(parentName(name)), path.Base(name))
		if err != nil {
			return j, "", err
		}
		j.Deletes = append(j.Deletes, journalDelete{Name: name, Aside: path.Join(parentName(name), aside)})
	}
	b, err := json.Marshal(j)
	if err != nil {
		return j, "", fmt.Errorf("commit the change: %w", err)
	}
	f, err := createStaged(d.root, JournalFile, false, b, SecretMode)
	if err != nil {
		return j, "", fmt.Errorf("commit the change: %w", err)
	}
	journalTemp = f.Name()
	if whole != nil {
		if err := f.Close(); err != nil {
			return j, journalTemp, fmt.Errorf("commit the change: close %s: %w", journalTemp, err)
		}
		step("staged unsynced")
		if err := whole.sync(); err != nil {
			return j, journalTemp, err
		}
		return j, journalTemp, nil
	}
	journalSynced := make(chan error, 1)
	go func() {
		err := f.Sync()
		if err != nil {
			err = fmt.Errorf("commit the change: sync %s: %w", journalTemp, err)
		}
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("commit the change: close %s: %w", journalTemp, cerr)
		}
		journalSynced <- err
	}()
	err = d.syncDirs(dirs)
	if jerr := <-journalSynced; err == nil {
		err = jerr
	}
	if err != nil {
		return j, journalTemp, err
	}
	return j, journalTemp, nil
}

// wholeSyncMin is the size of a change (files written) from which one
// syncfs makes it durable rather than an fsync of each file (a variable
// for the tests, which take either way).
var wholeSyncMin = 256

// wholeFSFor returns the file system to syncfs once for change p, nil when
// each file is to be synced on its own: a small change, a platform or file
// system without a syncfs as good as fsync (openWholeFS), or a staging
// directory on another file system than the state's root (a directory of
// the state that is a mount point).
func wholeFSFor(d *Dir, p *applyPlan) *wholeFS {
	if len(p.writes) < wholeSyncMin {
		return nil
	}
	w := openWholeFS(d.root)
	if w == nil {
		return nil
	}
	// A staged tree is made in its new directory's parent, and a
	// temporary file in its target's directory: all of them are there
	// before staging begins, and what is made inside them is on their
	// file system.
	checked := map[string]bool{}
	for i, fw := range p.writes {
		dir := parentName(fw.Name)
		if t := p.tree[i]; t != "" {
			dir = parentName(t)
		}
		if checked[dir] {
			continue
		}
		checked[dir] = true
		if !w.holds(d.abs(nearestExisting(d, dir))) {
			w.close()
			return nil
		}
	}
	return w
}

// nearestExisting is dir, or the nearest directory above it that exists.
func nearestExisting(d *Dir, dir string) string {
	for dir != "" {
		if _, err := os.Lstat(d.abs(dir)); err == nil {
			return dir
		}
		dir = parentName(dir)
	}
	return dir
}

// ioWorkers is how many file system calls that wait for the disk (fsync
// above all) an Apply has in flight at once. Concurrent fsyncs on one file
// system are served by one journal commit (ext4, xfs): BenchmarkApply of
// 10k mappings on a journaled ext4 took 12 s with 2, 6 s with 8 and 3.3 s
// with 32; 128 were no faster.
const ioWorkers = 32

// ioEach calls fn(i) for every i below n, ioWorkers at a time, and
// returns the error of the lowest index that failed. Once one fails no
// further index is started.
func ioEach(n int, fn func(i int) error) error {
	if n == 1 {
		return fn(0)
	}
	errs := make([]error, n)
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(n, ioWorkers) {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if errs[i] = fn(i); errs[i] != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// stageFiles makes each staging directory of p and writes each file of p
// into it (its path in temps[i]), synced: a temporary file, or under its
// own name in a staged tree.
//
// Files are made by one worker per core, each taking a whole staging
// directory: files made in one directory at once contend for its lock
// (10k records share mappings/), which costs more CPU than it saves. The
// largest directory goes first, so that it does not finish alone. With
// whole, which the caller syncs once, a flusher keeps the disk writing
// meanwhile; without, each file is synced, ioWorkers at a time: one by
// one, each fsync waited for its own commit of the file system's journal
// (an import of 10k mappings stages 40k files), while concurrent ones
// share one.
func stageFiles(d *Dir, p *applyPlan, temps []string, whole *wholeFS) error {
	syncEach := whole == nil
	var units [][]int // indexes of the writes staged in one directory
	unitOf := map[string]int{}
	for i, dir := range p.stageIn {
		u, ok := unitOf[dir]
		if !ok {
			u = len(units)
			unitOf[dir] = u
			units = append(units, nil)
		}
		units[u] = append(units[u], i)
	}
	slices.SortStableFunc(units, func(a, b []int) int { return len(b) - len(a) })

	type staged struct {
		i int
		f *os.File
	}
	errs := make([]error, len(p.writes))
	var failed atomic.Bool
	fail := func(i int, err error) {
		errs[i] = err
		failed.Store(true)
	}
	todo := make(chan staged, ioWorkers)
	var syncers sync.WaitGroup
	for range min(len(p.writes), ioWorkers) {
		if !syncEach {
			break // the caller syncs the whole file system once
		}
		syncers.Go(func() {
			for s := range todo {
				if err := s.f.Sync(); err != nil {
					fail(s.i, fmt.Errorf("sync %s: %w", s.f.Name(), err))
				}
				if err := s.f.Close(); err != nil && errs[s.i] == nil {
					fail(s.i, fmt.Errorf("close %s: %w", s.f.Name(), err))
				}
			}
		})
	}
	var flush *flusher
	if whole != nil {
		flush = whole.startFlushing()
		defer flush.stop()
	}
	var next atomic.Int64
	var makers sync.WaitGroup
	for range min(len(units), runtime.GOMAXPROCS(0)) {
		makers.Go(func() {
			for !failed.Load() {
				u := int(next.Add(1) - 1)
				if u >= len(units) {
					return
				}
				first := units[u][0]
				var err error
				if dir := p.stageIn[first]; p.lone[dir] {
					err = p.mkdirTree(d, dir)
				} else {
					err = mkdirStaging(d.abs(dir))
				}
				if err != nil {
					fail(first, err)
					return
				}
				for _, i := range units[u] {
					if failed.Load() {
						return
					}
					w := p.writes[i]
					if !syncEach && p.tree[i] != "" {
						// A new file in a new directory, that the
						// caller's syncfs makes durable: the fewest
						// system calls (see writeOnce).
						name := filepath.Join(d.abs(p.stageIn[i]), path.Base(w.Name))
						if err := writeOnce(name, w.Data, w.Perm); err != nil {
							fail(i, err)
							return
						}
						temps[i] = name
						flush.wrote()
						continue
					}
					if !syncEach {
						// A temporary file beside its target.
						name, err := writeTemp(d.abs(p.stageIn[i]), path.Base(w.Name), w.Data, w.Perm)
						if err != nil {
							fail(i, err)
							return
						}
						temps[i] = name
						flush.wrote()
						continue
					}
					f, err := createStaged(d.abs(p.stageIn[i]), path.Base(w.Name), p.tree[i] != "", w.Data, w.Perm)
					if err != nil {
						fail(i, err)
						return
					}
					temps[i] = f.Name()
					todo <- staged{i, f}
				}
			}
		})
	}
	makers.Wait()
	close(todo)
	syncers.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// mkdirStaging makes staging directory dir, or finds it there: one mkdir
// for a directory of a staged tree, whose parent is there (MkdirAll would
// stat it and its parent first: 20k calls for an import of 10k mappings),
// MkdirAll for everything else, which also gives the error.
func mkdirStaging(dir string) error {
	if os.Mkdir(dir, DirMode) == nil {
		return nil
	}
	return MkdirAll(dir)
}

// stageFile writes data to a new temporary file in dir, named as
// WriteFileAtomic names its own, with mode perm, synced.
func stageFile(dir, base string, data []byte, perm fs.FileMode) (string, error) {
	f, err := createStaged(dir, base, false, data, perm)
	if err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("close %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// createStaged writes data to a new file in dir, named base (exact) or a
// temporary name as WriteFileAtomic names its own, with mode perm, and
// returns it open and not synced. On error the file is closed and
// removed (nil when it was not even created).
func createStaged(dir, base string, exact bool, data []byte, perm fs.FileMode) (f *os.File, err error) {
	if exact {
		f, err = os.OpenFile(filepath.Join(dir, base), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	} else {
		f, err = os.CreateTemp(dir, "."+base+".tmp-*")
	}
	if err != nil {
		return nil, fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return nil, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	// Explicitly: CreateTemp uses 0600 and the umask must not decide.
	if err = f.Chmod(perm); err != nil {
		return nil, fmt.Errorf("set mode of %s: %w", f.Name(), err)
	}
	return f, nil
}

// unusedName picks a temporary name in dir for base (put aside, or
// staged) that is not there.
func unusedName(dir, base string) (string, error) {
	for range 100 {
		name := tempName(base)
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			return name, nil
		}
	}
	return "", fmt.Errorf("cannot find an unused temporary name for %s in %s", base, dir)
}

// tempName is a temporary name for base, as IsTempName knows them.
func tempName(base string) string {
	return "." + base + ".tmp-" + strconv.FormatUint(tempSuffix(), 10)
}

// tempSuffix is the random part of a temporary name; a test fixes it.
var tempSuffix = rand.Uint64

// writeTemp writes data to a new temporary file in dir with mode perm,
// unsynced, by writeOnce, and returns its path.
func writeTemp(dir, base string, data []byte, perm fs.FileMode) (string, error) {
	for range 100 {
		name := filepath.Join(dir, tempName(base))
		if err := writeOnce(name, data, perm); !errors.Is(err, fs.ErrExist) {
			return name, err
		}
	}
	return "", fmt.Errorf("cannot find an unused temporary name for %s in %s", base, dir)
}

// roll does steps 3-5 of j, skipping what is already done, so that it can
// run again after a crash part-way through. fresh says that j was staged
// by this process just now: nothing of it is done yet, so that the thousands
// of staged files of a large change need no look each.
func (d *Dir) roll(j *journal, fresh bool) error {
	dirs := map[string]bool{}
	renamesBegun := false
	if len(j.Writes) > 0 {
		_, err := os.Lstat(d.abs(j.Writes[0].Temp))
		renamesBegun = errors.Is(err, fs.ErrNotExist)
	}
	if !renamesBegun {
		for _, del := range j.Deletes {
			if _, err := os.Lstat(d.abs(del.Aside)); err == nil {
				continue // put aside before the crash
			}
			err := os.Rename(d.abs(del.Name), d.abs(del.Aside))
			if errors.Is(err, fs.ErrNotExist) {
				continue // nothing there to delete
			}
			if err != nil {
				return fmt.Errorf("delete %s: %w", del.Name, err)
			}
			dirs[parentName(del.Name)] = true
			step("deleted " + del.Name)
		}
		if err := d.syncDirs(dirs); err != nil {
			return err
		}
	}
	made := map[string]bool{}
	for _, w := range j.Writes {
		if !fresh {
			if _, err := os.Lstat(d.abs(w.Temp)); errors.Is(err, fs.ErrNotExist) {
				continue // renamed before the crash
			}
		}
		dir := parentName(w.Name)
		// A file staged in its own directory finds it there (the staged
		// file is in it); one staged above a deleted directory makes it,
		// once.
		if stagedIn := parentName(w.Temp); stagedIn != dir && !made[dir] {
			if err := MkdirAll(d.abs(dir)); err != nil {
				return err
			}
			made[dir] = true
			for up := dir; up != stagedIn && up != ""; up = parentName(up) {
				dirs[up] = true
			}
		}
		if err := os.Rename(d.abs(w.Temp), d.abs(w.Name)); err != nil {
			return fmt.Errorf("write %s: %w", w.Name, err)
		}
		dirs[parentName(w.Temp)] = true
		dirs[dir] = true
		step("renamed " + w.Name)
	}
	if err := d.syncDirs(dirs); err != nil {
		return err
	}
	clear(dirs)
	for _, del := range j.Deletes {
		if err := os.RemoveAll(d.abs(del.Aside)); err != nil {
			return fmt.Errorf("delete %s: %w", del.Name, err)
		}
		dirs[parentName(del.Aside)] = true
	}
	if err := d.syncDirs(dirs); err != nil {
		return err
	}
	step("cleaned")
	// The removal is not synced: the next sync of the root covers it (the
	// revision written when the lock is released, or the journal of the
	// next change, before which nothing else can be changed), and a
	// journal that a crash brings back until then names only steps that
	// are done, which a roll does again as nothing (as after a crash at
	// "cleaned").
	if err := os.Remove(filepath.Join(d.root, JournalFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// syncedDirs, when set by a test, is told the directories each syncDirs
// syncs.
var syncedDirs func(names []string)

// syncDirs syncs the directories named (store names, "" for the root); one
// that is gone needs no sync.
func (d *Dir) syncDirs(dirs map[string]bool) error {
	names := make([]string, 0, len(dirs))
	for name := range dirs {
		names = append(names, name)
	}
	slices.Sort(names)
	if syncedDirs != nil {
		syncedDirs(names)
	}
	return ioEach(len(names), func(i int) error {
		if err := syncDir(d.abs(names[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// finishJournal rolls forward a change that a crash (or a failed step)
// left committed but unfinished. It reports whether there was one.
func (d *Dir) finishJournal() (bool, error) {
	b, err := os.ReadFile(filepath.Join(d.root, JournalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("read the journal of an interrupted change: %w", err)
	}
	j, err := d.parseJournal(b)
	if err != nil {
		p := filepath.Join(d.root, JournalFile)
		return true, fault.Failf("look at "+p+": it lists the files of a change that was cut short; finish its renames by hand or remove it, then run the command again",
			"the journal of an interrupted change, %s, is damaged: %v", p, err)
	}
	for _, del := range j.Deletes {
		d.counted(del.Name)
	}
	for _, w := range j.Writes {
		d.counted(w.Name)
	}
	if err := d.roll(j, false); err != nil {
		return true, fault.Failf("fix what the error names (permissions, a full disk) and run the command again: it finishes the change then",
			"cannot finish the interrupted change that %s lists: %v", filepath.Join(d.root, JournalFile), err)
	}
	return true, nil
}

// parseJournal reads a journal and checks that it only names files inside
// the root and temporary names where it puts or finds staged files, so
// that a damaged one cannot make recovery move other files.
func (d *Dir) parseJournal(b []byte) (*journal, error) {
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	if j.Version != journalVersion {
		return nil, fmt.Errorf("its version is %d; this p2ptls reads version %d", j.Version, journalVersion)
	}
	check := func(name, temp string) error {
		for _, n := range []string{name, temp} {
			if _, err := d.path(n); err != nil {
				return err
			}
		}
		if !IsTempName(path.Base(temp)) {
			return fmt.Errorf("%q is not a temporary name", temp)
		}
		if path.Clean(name) != name || path.Clean(temp) != temp {
			return fmt.Errorf("%q is not in clean form", name)
		}
		return nil
	}
	for _, del := range j.Deletes {
		if err := check(del.Name, del.Aside); err != nil {
			return nil, err
		}
	}
	for _, w := range j.Writes {
		if err := check(w.Name, w.Temp); err != nil {
			return nil, err
		}
	}
	return &j, nil
}

// journalNames are the temporary names a journal at root uses (staged
// files and what it puts aside), nil when there is none; ok is false when
// one exists that cannot be read.
func journalNames(root string) (names map[string]bool, exists bool) {
	b, err := os.ReadFile(filepath.Join(root, JournalFile))
	if err != nil {
		return nil, !errors.Is(err, fs.ErrNotExist)
	}
	names = map[string]bool{}
	j, err := (&Dir{root: root}).parseJournal(b)
	if err != nil {
		return names, true
	}
	for _, del := range j.Deletes {
		names[del.Aside] = true
	}
	for _, w := range j.Writes {
		names[w.Temp] = true
	}
	return names, true
}

// finishOnLock finishes, under the lock just taken, a change whose holder
// died after committing it (see JournalFile), and then removes what that
// holder left if removeLeftovers held back for the journal. Lock calls it
// once the lock is held and its unlock func wrapped, so that the
// recovery's changes bump the revision at unlock like any other.
func (d *Dir) finishOnLock(ctx context.Context, unlock func() error, err error) (func() error, error) {
	if err != nil || unlock == nil {
		return unlock, err
	}
	if _, serr := os.Lstat(filepath.Join(d.root, JournalFile)); serr != nil {
		return unlock, nil
	}
	// The recovery is a commit: a command being stopped does not start it
	// (the next one will), and one begun is waited for.
	if err := noteChange(ctx, d, JournalFile); err != nil {
		return nil, errors.Join(err, unlock())
	}
	if _, err := d.finishJournal(); err != nil {
		return nil, errors.Join(err, unlock())
	}
	if d.leftoversHeld.Swap(false) {
		d.removeLeftovers(ctx)
	}
	return unlock, nil
}
