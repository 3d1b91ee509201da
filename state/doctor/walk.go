package doctor

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

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
	// pairs are the identities of the regular files named cert.pem and
	// key.pem in the mapping directories, by store name.
	pairs map[string]state.FileID
}

// scanPart is what the walk of one directory found, joined in order.
type scanPart struct {
	modes modeFindings
	temps []state.TempEntry
	pairs []pairFile
}

type pairFile struct {
	name string
	id   state.FileID
}

func (a *scanPart) add(b *scanPart) {
	a.modes.add(&b.modes)
	a.temps = append(a.temps, b.temps...)
	a.pairs = append(a.pairs, b.pairs...)
}

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

// scanTree walks root (root included) once: every entry's mode is
// classified by checkPermissions' rules, in filepath.WalkDir's order and
// with its first error (the findings after that error are not kept), with
// the directories read and their entries stat'ed by one worker per core.
// How a directory is read is the platform's: see walk_linux.go.
func scanTree(root string) (treeScan, error) {
	top, err := lstatEntry(root)
	if err != nil {
		return treeScan{}, err
	}
	w := &treeWalk{root: root, sem: make(chan struct{}, runtime.GOMAXPROCS(0))}
	var p scanPart
	if top.stat {
		w.classify(&p.modes, ".", top)
	}
	if top.dir {
		d, err := openDir(root)
		if err == nil {
			var sub scanPart
			sub, err = w.dir(d, root, "")
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
	sem  chan struct{} // a slot for each extra worker
}

func (w *treeWalk) result(p *scanPart) treeScan {
	t := treeScan{modes: p.modes, temps: p.temps, pairs: make(map[string]state.FileID, len(p.pairs))}
	for _, f := range p.pairs {
		t.pairs[f.name] = f.id
	}
	return t
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

// dir walks what is below the open directory d (at path, rel its store
// name, "" for the root) and closes it: each entry, then (for a
// directory) what is below it, in name order. Subdirectories go to
// another worker when one is free; the results are joined in order, and
// the first error in that order is the walk's, as WalkDir stops at it.
func (w *treeWalk) dir(d dirRef, path, rel string) (scanPart, error) {
	var p scanPart
	entries, err := readDir(d, path)
	if err != nil {
		closeDir(d)
		if isGone(err) {
			err = nil
		}
		return p, err
	}
	slices.SortFunc(entries, func(a, b walkEntry) int { return strings.Compare(a.name, b.name) })
	pairDir := strings.HasPrefix(rel, mappings.PublicDir+"/") && !strings.Contains(rel[len(mappings.PublicDir)+1:], "/")
	type sub struct {
		p    scanPart
		err  error
		done chan struct{}
	}
	subs := make([]*sub, len(entries))
	own := make([]scanPart, len(entries))
	var openErr []error
	for i, e := range entries {
		childRel := e.name
		if rel != "" {
			childRel = rel + "/" + e.name
		}
		if state.IsTempName(e.name) {
			own[i].temps = append(own[i].temps, state.TempEntry{Name: childRel, Dir: e.dir})
		}
		if e.stat {
			w.classify(&own[i].modes, childRel, e)
			if pairDir && e.mode.IsRegular() && (e.name == mappings.CertFileName || e.name == mappings.KeyFileName) {
				own[i].pairs = append(own[i].pairs, pairFile{name: childRel, id: e.id})
			}
		}
		if !e.dir {
			continue
		}
		childPath := path + string(filepath.Separator) + e.name
		cd, err := openSubdir(d, e.name, childPath)
		if err != nil {
			if !isGone(err) {
				if openErr == nil {
					openErr = make([]error, len(entries))
				}
				openErr[i] = err
			}
			continue
		}
		s := &sub{done: make(chan struct{})}
		subs[i] = s
		select {
		case w.sem <- struct{}{}:
			go func() {
				defer func() { <-w.sem; close(s.done) }()
				s.p, s.err = w.dir(cd, childPath, childRel)
			}()
		default:
			s.p, s.err = w.dir(cd, childPath, childRel)
			close(s.done)
		}
	}
	closeDir(d)
	var first error
	for i := range entries {
		if first != nil {
			if subs[i] != nil {
				<-subs[i].done // every worker ends before the walk does
			}
			continue
		}
		p.add(&own[i])
		if openErr != nil && openErr[i] != nil {
			first = openErr[i]
			continue
		}
		if s := subs[i]; s != nil {
			<-s.done
			p.add(&s.p)
			first = s.err
		}
	}
	return p, first
}
