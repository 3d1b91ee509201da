package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// modeFindings are the entries of the state directory whose mode is too
// open, in the order filepath.WalkDir visits them.
type modeFindings struct {
	secrets, dirs, files, secretPaths []string
}

func (a *modeFindings) add(b *modeFindings) {
	a.secrets = append(a.secrets, b.secrets...)
	a.dirs = append(a.dirs, b.dirs...)
	a.files = append(a.files, b.files...)
	a.secretPaths = append(a.secretPaths, b.secretPaths...)
}

// treeScan is what one walk of the state directory finds for the checks
// that look at its files: checkPermissions' modes, checkOrphans'
// temporary files, and the identities of the mappings' certificates and
// keys for checkCoverage's memo. A state of 100k mappings is 500k
// entries: one walk, not one per check.
type treeScan struct {
	modes modeFindings
	// temps are the entries with a temporary name (state.IsTempName), in
	// walk order, wherever they are: state.FindLeftoversIn applies its own
	// rules (run/ and what is inside a temporary directory are not
	// leftovers).
	temps []state.TempEntry
	// pubNames are the entries of certs/public (sorted), and pubFiles,
	// for each one that is a mapping directory, the identities of its
	// regular files cert.pem, key.pem and meta.toml: checkCoverage's memo
	// and the certificate summaries of mappings.List take them instead of
	// a stat each. Kept by position, not in a map: 100k mappings.
	pubNames []dirent
	pubFiles []mappingFiles
	// pubWalked says certs/public was walked (a directory, not a
	// symlink), so that pubNames are all its entries.
	pubWalked bool
	// dirs are the directories walked (store names), for the memo's
	// pruning; stored counts the listings the walk memoized.
	dirs   []string
	stored int64
}

// scanPart is what the walk of one directory found, joined in order.
type scanPart struct {
	modes modeFindings
	temps []state.TempEntry
}

// publicNames are the names in certs/public as the walk read them
// (sorted); ok is false when it did not read that directory.
func (t *treeScan) publicNames() (names []string, ok bool) {
	if !t.pubWalked {
		return nil, false
	}
	names = make([]string, len(t.pubNames))
	for i, de := range t.pubNames {
		names[i] = de.name
	}
	return names, true
}

// mappingFiles are the identities of one mapping directory's stored
// files, in the order of storedFiles; ok says the walk saw a regular file.
type mappingFiles struct {
	ids [len(storedFiles)]state.FileID
	ok  [len(storedFiles)]bool
	// The directory's entry in doctor's memo (see mappingDirVersion):
	// outcome is its outcome part as the memo had it (a view), listing
	// the listing part to keep (the memo's when still the directory's,
	// or the one just read: fresh); put says the entry was put again.
	outcome, listing []byte
	fresh, put       bool
}

// storedFiles are the files of a mapping directory whose identities the
// walk keeps.
var storedFiles = [...]string{mappings.CertFileName, mappings.KeyFileName, mappings.MetaFileName}

// fileID is the identity the walk saw of file (one of storedFiles) of
// mapping id's directory.
func (t *treeScan) fileID(id, file string) (state.FileID, bool) {
	return t.filesOf(id, -1).id(file)
}

// filesOf are the identities the walk saw in mapping id's directory, nil
// when it saw none. hint is where id likely is among certs/public's
// entries (a mapping's position in the config, sorted by id as they are),
// -1 for none: 100k binary searches are not free.
func (t *treeScan) filesOf(id string, hint int) *mappingFiles {
	if t == nil {
		return nil
	}
	if hint >= 0 && hint < len(t.pubNames) && hint < len(t.pubFiles) && t.pubNames[hint].name == id {
		return &t.pubFiles[hint]
	}
	j, ok := slices.BinarySearchFunc(t.pubNames, id, func(de dirent, id string) int { return strings.Compare(de.name, id) })
	if !ok || j >= len(t.pubFiles) {
		return nil
	}
	return &t.pubFiles[j]
}

// id is the identity of file (one of storedFiles) in f.
func (f *mappingFiles) id(file string) (state.FileID, bool) {
	if f == nil {
		return state.FileID{}, false
	}
	for i, name := range storedFiles {
		if name == file && f.ok[i] {
			return f.ids[i], true
		}
	}
	return state.FileID{}, false
}

func (a *scanPart) add(b *scanPart) {
	a.modes.add(&b.modes)
	a.temps = append(a.temps, b.temps...)
}

// dirent is a directory entry before it is stat'ed: its name, and its
// type as far as the directory says.
type dirent struct {
	name string
	typ  direntType
}

type direntType uint8

const (
	typeUnknown direntType = iota // the file system does not say: stat says
	typeDir
	typeSymlink
	typeOther
)

// walkEntry is one entry of a directory as the walk sees it: its own
// mode (never a symlink's target's) and identity. stat is false for a
// symlink, which is not classified, and for an entry removed while the
// walk looked; dir says the directory lists it as one (a symlink is not
// followed).
type walkEntry struct {
	name      string
	mode      fs.FileMode
	id        state.FileID
	stat, dir bool
}

// listingVersion is the first byte of a directory listing in doctor's
// memo (see treeWalk.listing).
const listingVersion = 1

// scanTree walks root (root included) once: every entry's mode is
// classified by checkPermissions' rules, in filepath.WalkDir's order and
// with its first error (the findings after that error are not kept), with
// the directories read and their entries stat'ed by one worker per core.
// How a directory is read is the platform's: see walk_linux.go.
//
// memo, when not nil, keeps each directory's listing by the directory's
// identity: creating, removing or renaming an entry changes the
// directory's modification and change times, so a directory whose
// identity did not change has the entries it had, and is not read again
// (its entries are still stat'ed: a chmod changes no directory). At 100k
// mappings that is 100k directories not opened and read.
func scanTree(root string, memo *state.Memo) (treeScan, error) {
	top, err := lstatEntry(root)
	if err != nil {
		return treeScan{}, err
	}
	w := &treeWalk{root: root, memo: memo, sem: make(chan struct{}, runtime.GOMAXPROCS(0))}
	var p scanPart
	if top.stat {
		w.classify(&p.modes, ".", top)
	}
	if top.dir {
		d, err := openDir(root)
		if err == nil {
			var sub scanPart
			sub, err = w.dir(d, dirPath{parent: root}, "", top.id, nil, nil)
			p.add(&sub)
		} else if isGone(err) {
			err = nil
		}
		if err != nil {
			return w.result(&p), err
		}
	}
	return w.result(&p), nil
}

type treeWalk struct {
	root string
	memo *state.Memo
	sem  chan struct{} // a slot for each extra worker
	// stored counts the listings put in the memo.
	stored atomic.Int64
	// dirs are the directories walked, in no order: each adds itself
	// once it has read its entries; pubNames and pubFiles are set by
	// certs/public's.
	mu        sync.Mutex
	pubNames  []dirent
	pubFiles  []mappingFiles
	pubWalked bool
	dirs      []string
}

func (w *treeWalk) result(p *scanPart) treeScan {
	w.mu.Lock()
	defer w.mu.Unlock()
	return treeScan{modes: p.modes, temps: p.temps, pubNames: w.pubNames, pubFiles: w.pubFiles, pubWalked: w.pubWalked, dirs: w.dirs, stored: w.stored.Load()}
}

// classify notes entry e at rel if its mode is too open
// (checkPermissions' rules). Most entries are not (0600 files, 0700
// directories), and cost no string.
func (w *treeWalk) classify(f *modeFindings, rel string, e walkEntry) {
	perm := e.mode.Perm()
	if perm&0o077 == 0 {
		return
	}
	shown := func() string { return fmt.Sprintf("%s (%04o)", rel, perm) }
	switch {
	case e.mode.IsDir():
		f.dirs = append(f.dirs, shown())
	case isSecret(rel):
		f.secrets = append(f.secrets, shown())
		f.secretPaths = append(f.secretPaths, filepath.Join(w.root, filepath.FromSlash(rel)))
	case perm&0o022 != 0:
		f.files = append(f.files, shown())
	}
}

// dirPath is a directory's path as the walk's errors name it, joined only
// when needed: most of the state's directories are read from the memo and
// never named.
type dirPath struct{ parent, name string }

func (p dirPath) String() string {
	if p.name == "" {
		return p.parent
	}
	return p.parent + string(filepath.Separator) + p.name
}

// listingName is the memo's name for the listing of directory rel: it
// ends in a slash, which no file's name does.
func listingName(rel string) string { return rel + "/" }

// listing returns the memoized entries of directory e at rel, when e is
// still the directory they were listed from.
func (w *treeWalk) listing(rel string, e walkEntry) ([]dirent, bool) {
	if w.memo == nil || !e.stat {
		return nil, false
	}
	v, ok := w.memo.Get(listingName(rel), e.id)
	if !ok {
		return nil, false
	}
	des, err := decodeListing(v)
	return des, err == nil
}

// remember memoizes the entries of directory rel (sorted), listed after
// its identity id was taken.
func (w *treeWalk) remember(rel string, id state.FileID, des []dirent) {
	// Not the root, which changes with every change of p2ptls.toml, nor
	// run/, which serve and every memo's save change.
	if w.memo == nil || rel == "" || rel == state.RunDir || strings.HasPrefix(rel, state.RunDir+"/") {
		return
	}
	b := make([]byte, 0, 1+len(des)*12)
	b = append(b, listingVersion)
	b = binary.AppendUvarint(b, uint64(len(des)))
	for _, de := range des {
		b = state.AppendMemoString(b, de.name)
		b = append(b, byte(de.typ))
	}
	w.memo.Put(listingName(rel), id, b, false)
	w.stored.Add(1)
}

func decodeListing(b []byte) ([]dirent, error) {
	if len(b) == 0 || b[0] != listingVersion {
		return nil, errors.New("not a listing of this version")
	}
	r := state.NewMemoReader(b[1:])
	des := make([]dirent, r.Count())
	for i := range des {
		des[i].name = r.View() // into the memo's value, never written to
		des[i].typ = direntType(r.Byte())
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return des, nil
}

// dir walks what is below the directory d (at at, rel its store name, ""
// for the root, id its identity): each entry, then (for a directory)
// what is below it, in name order, and then closes d. listed are d's
// entries when the memo had them, nil to read d. Subdirectories go to
// another worker when one is free; the results are joined in order, and
// the first error in that order is the walk's, as WalkDir stops at it.
//
// files, for a mapping directory (below certs/public), gets the
// identities of its stored files.
func (w *treeWalk) dir(d dirRef, at dirPath, rel string, id state.FileID, listed []dirent, files *mappingFiles) (scanPart, error) {
	// d is closed once every worker below it has ended: a subdirectory
	// whose listing came from the memo is reached through d.
	defer closeDir(d)
	var p scanPart
	path := ""
	pathOf := func() string { // made only for a directory that needs it
		if path == "" {
			path = at.String()
		}
		return path
	}
	entries := listed
	if entries == nil {
		var err error
		if entries, err = listDir(d, pathOf()); err != nil {
			if isGone(err) {
				err = nil
			}
			return p, err
		}
		slices.SortFunc(entries, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
		switch {
		case files != nil:
			rememberMappingDir(files, id, entries)
			w.stored.Add(1)
		case rel != "":
			w.remember(rel, id, entries)
		}
	}
	// The mapping directories' files go where certs/public's walk says,
	// by their position in its entries.
	var pub []mappingFiles
	if rel == mappings.PublicDir {
		pub = make([]mappingFiles, len(entries))
		w.mu.Lock()
		w.pubNames, w.pubFiles, w.pubWalked = entries, pub, true
		w.mu.Unlock()
	}
	defer func() {
		w.mu.Lock()
		if rel != "" {
			w.dirs = append(w.dirs, rel)
		}
		w.mu.Unlock()
	}()
	// A slot holds, in entry order, what one entry found and what was
	// found below it: only entries that found something or are
	// directories have one (a 100k-entry directory of 0700 directories
	// costs no 100k empty findings). The identities of the pairs and the
	// directories walked have no order: they go to w, once (the defer
	// above).
	type slot struct {
		own, below *scanPart     // nil: nothing
		err        error         // the first error below, or opening it
		done       chan struct{} // closed when a worker is done below; nil when walked inline
	}
	// Made once, with room for every entry: a worker writes into its
	// slot, which appending must never move.
	var slots []slot
	newSlot := func(own *scanPart) *slot {
		if slots == nil {
			slots = make([]slot, 0, len(entries))
		}
		slots = append(slots, slot{own: own})
		return &slots[len(slots)-1]
	}
	for i, de := range entries {
		e := statAt(d, de)
		childRel := ""
		relOf := func() string { // made only for an entry that needs it
			if childRel == "" {
				childRel = e.name
				if rel != "" {
					childRel = rel + "/" + e.name
				}
			}
			return childRel
		}
		var own *scanPart
		if state.IsTempName(e.name) {
			own = &scanPart{temps: []state.TempEntry{{Name: relOf(), Dir: e.dir}}}
		}
		if e.stat {
			if e.mode.Perm()&0o077 != 0 {
				var f modeFindings
				if w.classify(&f, relOf(), e); len(f.dirs)+len(f.secrets)+len(f.files) > 0 {
					if own == nil {
						own = &scanPart{}
					}
					own.modes = f
				}
			}
			if files != nil && e.mode.IsRegular() {
				for j, name := range storedFiles {
					if e.name == name {
						files.ids[j], files.ok[j] = e.id, true
					}
				}
			}
		}
		if !e.dir {
			if own != nil {
				newSlot(own)
			}
			continue
		}
		sl := newSlot(own)
		childAt := dirPath{parent: pathOf(), name: e.name}
		var cd dirRef
		childRel = relOf()
		var childListed []dirent
		var ok bool
		if pub != nil {
			childListed, ok = w.mappingDirListing(childRel, e, &pub[i])
		} else {
			childListed, ok = w.listing(childRel, e)
		}
		if ok {
			cd = viaParent(d, e.name)
		} else {
			var err error
			if cd, err = openSubdir(d, e.name, childAt.String()); err != nil {
				if !isGone(err) {
					sl.err = err
				}
				continue
			}
		}
		childID := e.id
		var childFiles *mappingFiles
		if pub != nil {
			childFiles = &pub[i]
		}
		select {
		case w.sem <- struct{}{}:
			sl.done = make(chan struct{})
			go func() {
				defer func() { <-w.sem; close(sl.done) }()
				sl.below, sl.err = w.below(cd, childAt, childRel, childID, childListed, childFiles)
			}()
		default:
			sl.below, sl.err = w.below(cd, childAt, childRel, childID, childListed, childFiles)
		}
	}
	var first error
	for i := range slots {
		sl := &slots[i]
		if sl.done != nil {
			<-sl.done // every worker ends before the walk does
		}
		if first != nil {
			continue
		}
		if sl.own != nil {
			p.add(sl.own)
		}
		if sl.below != nil {
			p.add(sl.below)
		}
		first = sl.err
	}
	return p, first
}

// below is dir, with what it found as a pointer, nil when nothing: most
// directories (100k mapping directories) find nothing, and their slots
// stay small.
func (w *treeWalk) below(d dirRef, at dirPath, rel string, id state.FileID, listed []dirent, files *mappingFiles) (*scanPart, error) {
	p, err := w.dir(d, at, rel, id, listed, files)
	if p.empty() {
		return nil, err
	}
	found := p // only this escapes: p itself stays on the stack
	return &found, err
}

func (a *scanPart) empty() bool {
	m := &a.modes
	return len(a.temps)+len(m.secrets)+len(m.dirs)+len(m.files)+len(m.secretPaths) == 0
}
