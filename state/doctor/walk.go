package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
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

// scanModes finds the entries under root (root included) whose mode is too
// open: what filepath.WalkDir with checkPermissions' rules finds, in the
// same order and with the same first error, but with the directories read
// and their entries stat'ed by one worker per core. A state of 100k
// mappings is 400k entries, each an lstat.
func scanModes(root string) (modeFindings, error) {
	info, err := os.Lstat(root)
	if err != nil {
		return modeFindings{}, err
	}
	w := &modeWalk{root: root, sem: make(chan struct{}, runtime.GOMAXPROCS(0))}
	var f modeFindings
	w.classify(&f, root, fs.FileInfoToDirEntry(info))
	if !info.IsDir() {
		return f, nil
	}
	sub, err := w.dir(root)
	f.add(&sub)
	return f, err
}

type modeWalk struct {
	root string
	sem  chan struct{} // a slot for each extra worker
}

// classify notes entry p if its mode is too open (checkPermissions' rules).
func (w *modeWalk) classify(f *modeFindings, p string, de fs.DirEntry) {
	if de.Type()&fs.ModeSymlink != 0 {
		return
	}
	info, err := de.Info()
	if err != nil {
		return // removed while we looked
	}
	rel, _ := filepath.Rel(w.root, p)
	rel = filepath.ToSlash(rel)
	perm := info.Mode().Perm()
	shown := fmt.Sprintf("%s (%04o)", rel, perm)
	switch {
	case de.IsDir():
		if perm&0o077 != 0 {
			f.dirs = append(f.dirs, shown)
		}
	case isSecret(rel):
		if perm&0o077 != 0 {
			f.secrets = append(f.secrets, shown)
			f.secretPaths = append(f.secretPaths, p)
		}
	default:
		if perm&0o022 != 0 {
			f.files = append(f.files, shown)
		}
	}
}

// dir walks what is below dir: each entry, then (for a directory) what is
// below it, in name order. Subdirectories go to another worker when one is
// free; the results are joined in order, and the first error in that
// order is the walk's, as WalkDir stops at it.
func (w *modeWalk) dir(dir string) (modeFindings, error) {
	var f modeFindings
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	type sub struct {
		f    modeFindings
		err  error
		done chan struct{}
	}
	subs := make([]*sub, len(entries))
	own := make([]modeFindings, len(entries))
	for i, de := range entries {
		p := filepath.Join(dir, de.Name())
		w.classify(&own[i], p, de)
		if !de.IsDir() {
			continue
		}
		s := &sub{done: make(chan struct{})}
		subs[i] = s
		select {
		case w.sem <- struct{}{}:
			go func() {
				defer func() { <-w.sem; close(s.done) }()
				s.f, s.err = w.dir(p)
			}()
		default:
			s.f, s.err = w.dir(p)
			close(s.done)
		}
	}
	var first error
	for i := range entries {
		if first != nil {
			if subs[i] != nil {
				<-subs[i].done // every worker ends before the walk does
			}
			continue
		}
		f.add(&own[i])
		if s := subs[i]; s != nil {
			<-s.done
			f.add(&s.f)
			first = s.err
		}
	}
	return f, first
}
