package statetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// Mem is a state.Store (and state.Claimer) held in memory: the reference
// for the contract that is not a directory, and a test double for the code
// paths of a store that is not a state.Local. Files have modes, directories
// exist on their own (a Write makes its parents state.DirMode), List
// lists like Dir.List, Apply is all or nothing, and Revision changes
// exactly when a file outside run/ and acme/challenges/ changes. It is
// small rather than fast: List walks every name.
type Mem struct {
	name        string
	lockTimeout time.Duration
	lock        chan struct{} // full while locked

	mu     sync.Mutex
	holder string // the lock holder's purpose
	tree   memTree
	rev    uint64
	feeds  map[*state.Feed]struct{}
	claims map[string]bool
	kept   map[string]memTree
}

var (
	_ state.Store   = (*Mem)(nil)
	_ state.Claimer = (*Mem)(nil)
)

// memTree is the whole content of a Mem.
type memTree struct {
	files map[string]memFile
	dirs  map[string]fs.FileMode
}

type memFile struct {
	data []byte
	perm fs.FileMode
	mod  time.Time
}

func newTree() memTree {
	return memTree{files: map[string]memFile{}, dirs: map[string]fs.FileMode{}}
}

func (t memTree) clone() memTree {
	return memTree{files: maps.Clone(t.files), dirs: maps.Clone(t.dirs)}
}

// NewMem returns an empty store called name ("mem:NAME" in messages) whose
// Lock waits up to lockTimeout.
func NewMem(name string, lockTimeout time.Duration) *Mem {
	return &Mem{
		name: "mem:" + name, lockTimeout: lockTimeout, lock: make(chan struct{}, 1),
		tree: newTree(), feeds: map[*state.Feed]struct{}{}, claims: map[string]bool{}, kept: map[string]memTree{},
	}
}

// Name is how messages name the store.
func (m *Mem) Name() string { return m.name }

// clean returns name in the form the store keys it, refusing what Dir
// refuses: empty, absolute, the root itself or a way out of it.
func clean(name string) (string, error) {
	c := path.Clean(name)
	if name == "" || path.IsAbs(name) || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("invalid state file name %q", name)
	}
	return c, nil
}

func notExist(op, name string) error { return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist} }

// Read returns a copy of name's content.
func (m *Mem) Read(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n, err := clean(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.tree.files[n]; ok {
		return bytes.Clone(f.data), nil
	}
	if _, ok := m.tree.dirs[n]; ok {
		return nil, fmt.Errorf("read %s: is a directory", n)
	}
	return nil, notExist("read", name)
}

// Stat describes name, a file or a directory.
func (m *Mem) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n, err := clean(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.tree.files[n]; ok {
		return memInfo{name: path.Base(n), size: int64(len(f.data)), mode: f.perm, mod: f.mod}, nil
	}
	if perm, ok := m.tree.dirs[n]; ok {
		return memInfo{name: path.Base(n), mode: fs.ModeDir | perm}, nil
	}
	return nil, notExist("stat", name)
}

// List returns the sorted names directly under dir ("" for the root); a
// missing directory lists as empty, a file is an error.
func (m *Mem) List(ctx context.Context, dir string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := ""
	if dir != "" {
		n, err := clean(dir)
		if err != nil {
			return nil, err
		}
		prefix = n + "/"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tree.files[strings.TrimSuffix(prefix, "/")]; ok {
		return nil, fmt.Errorf("list %s: not a directory", dir)
	}
	seen := map[string]bool{}
	for _, n := range slices.Concat(slices.Collect(maps.Keys(m.tree.files)), slices.Collect(maps.Keys(m.tree.dirs))) {
		if rest, ok := strings.CutPrefix(n, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			seen[rest] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// Write replaces name, making its parent directories state.DirMode.
func (m *Mem) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	return m.Apply(ctx, state.Change{Writes: []state.FileWrite{{Name: name, Data: data, Perm: perm}}})
}

// Delete removes name, a file or a directory with everything in it;
// removing what is not there is not an error.
func (m *Mem) Delete(ctx context.Context, name string) error {
	return m.Apply(ctx, state.Change{Deletes: []string{name}})
}

// Apply makes c's deletes, then its writes, as one change: every name is
// checked on a copy of the tree first, so that a refused change leaves
// nothing behind.
func (m *Mem) Apply(ctx context.Context, c state.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.tree.clone()
	now := time.Now()
	for _, d := range c.Deletes {
		n, err := clean(d)
		if err != nil {
			return err
		}
		for name := range next.files {
			if name == n || strings.HasPrefix(name, n+"/") {
				delete(next.files, name)
			}
		}
		for name := range next.dirs {
			if name == n || strings.HasPrefix(name, n+"/") {
				delete(next.dirs, name)
			}
		}
	}
	for _, w := range c.Writes {
		n, err := clean(w.Name)
		if err != nil {
			return err
		}
		if _, ok := next.dirs[n]; ok {
			return fmt.Errorf("write %s: is a directory", n)
		}
		for p := path.Dir(n); p != "."; p = path.Dir(p) {
			if _, ok := next.files[p]; ok {
				return fmt.Errorf("write %s: %s is not a directory", n, p)
			}
			if _, ok := next.dirs[p]; !ok {
				next.dirs[p] = state.DirMode
			}
		}
		next.files[n] = memFile{data: bytes.Clone(w.Data), perm: w.Perm.Perm(), mod: now}
	}
	m.commit(next, false)
	return nil
}

// commit makes next the content and, when the desired state changed,
// bumps the revision and tells the subscribers which files changed. The
// caller holds mu.
func (m *Mem) commit(next memTree, full bool) {
	var changed []string
	for _, n := range slices.Sorted(maps.Keys(next.files)) {
		old, ok := m.tree.files[n]
		f := next.files[n]
		if !state.IsRuntime(n) && (!ok || old.perm != f.perm || !bytes.Equal(old.data, f.data)) {
			changed = append(changed, n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m.tree.files)) {
		if _, ok := next.files[n]; !ok && !state.IsRuntime(n) {
			changed = append(changed, n)
		}
	}
	m.tree = next
	if len(changed) == 0 && !full {
		return
	}
	slices.Sort(changed)
	m.rev++
	for f := range m.feeds {
		f.Publish(changed, full)
	}
}

// Replace makes the store's whole content what fill stages (see
// state.ReplaceOptions): fill writes into a staging tree without the lock;
// the swap happens under the lock after Check, carrying run/ over as Dir
// does, and the old content is kept under the name Replaced.Kept (read it
// with Kept) when Check says so.
func (m *Mem) Replace(ctx context.Context, fill func(state.Staging) error, opts state.ReplaceOptions) (*state.Replaced, error) {
	st := &memStaging{target: m.name, tree: newTree(), dry: opts.DryRun}
	if err := fill(st); err != nil {
		return nil, err
	}
	if opts.DryRun {
		return &state.Replaced{}, nil
	}
	unlock, err := m.Lock(ctx, "restore")
	if err != nil {
		return nil, err
	}
	defer unlock()
	keep := false
	if opts.Check != nil {
		if keep, err = opts.Check(ctx, m); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := st.tree
	for n, f := range m.tree.files {
		if strings.HasPrefix(n, state.RunDir+"/") {
			next.files[n] = f
		}
	}
	for n, perm := range m.tree.dirs {
		if n == state.RunDir || strings.HasPrefix(n, state.RunDir+"/") {
			next.dirs[n] = perm
		}
	}
	rep := &state.Replaced{}
	if keep {
		rep.Kept = m.keepName(opts.Now)
		m.kept[rep.Kept] = m.tree
	}
	m.commit(next, true)
	return rep, nil
}

// keepName is <name>.pre-restore-<UTC time>, with a counter when a
// Replace in the same second used it. The caller holds mu.
func (m *Mem) keepName(now time.Time) string {
	base := m.name + ".pre-restore-" + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 2; ; i++ {
		if _, ok := m.kept[name]; !ok {
			return name
		}
		name = base + "-" + strconv.Itoa(i)
	}
}

// Kept returns the content a Replace kept under name as a store of its
// own, false when there is none.
func (m *Mem) Kept(name string) (*Mem, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.kept[name]
	if !ok {
		return nil, false
	}
	k := NewMem(strings.TrimPrefix(name, "mem:"), m.lockTimeout)
	k.tree = t.clone()
	return k, true
}

// Lock takes the store's lock, waiting up to its lock timeout: then it
// fails with fault.Locked naming the holder's purpose.
func (m *Mem) Lock(ctx context.Context, purpose string) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timer := time.NewTimer(m.lockTimeout)
	defer timer.Stop()
	select {
	case m.lock <- struct{}{}:
	default: // held: wait, the lock first so that a timeout of 0 still takes a free one
		select {
		case m.lock <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			m.mu.Lock()
			holder := m.holder
			m.mu.Unlock()
			holder = strconv.Quote(holder)
			if holder == `""` {
				holder = "another holder" // it is just taking the lock
			}
			return nil, &fault.Error{
				Kind: fault.Locked,
				Msg:  fmt.Sprintf("the store %s is locked by %s", m.name, holder),
				Hint: fmt.Sprintf("wait for it to finish, or wait longer with --lock-timeout (now %s)", m.lockTimeout),
			}
		}
	}
	m.mu.Lock()
	m.holder = purpose
	m.mu.Unlock()
	var once sync.Once
	return func() error {
		err := fmt.Errorf("the lock of %s was released already", m.name)
		once.Do(func() {
			m.mu.Lock()
			m.holder = ""
			m.mu.Unlock()
			<-m.lock
			err = nil
		})
		return err
	}, nil
}

// Revision changes exactly when a file of the desired state changed.
func (m *Mem) Revision(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return strconv.FormatUint(m.rev, 10), nil
}

// Watch signals changes of the desired state until ctx ends.
func (m *Mem) Watch(ctx context.Context) <-chan struct{} { return m.subscribe(ctx, false).C }

// WatchChanges signals changes of the desired state with their names;
// a Replace reports Full.
func (m *Mem) WatchChanges(ctx context.Context) *state.Feed { return m.subscribe(ctx, true) }

func (m *Mem) subscribe(ctx context.Context, names bool) *state.Feed {
	f := state.NewFeed(names)
	m.mu.Lock()
	m.feeds[f] = struct{}{}
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		delete(m.feeds, f) // no Publish after this, so Close is safe
		m.mu.Unlock()
		f.Close()
	}()
	return f
}

// TryClaim takes the claim name unless it is held.
func (m *Mem) TryClaim(ctx context.Context, name string) (func(), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claims[name] {
		return nil, false, nil
	}
	m.claims[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.claims, name)
			m.mu.Unlock()
		})
	}, true, nil
}

// memInfo describes a file or directory of a Mem.
type memInfo struct {
	name string
	size int64
	mode fs.FileMode
	mod  time.Time
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return i.mode }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.mode.IsDir() }
func (i memInfo) Sys() any           { return nil }

// memStaging is the Staging of a Replace: a tree of its own, which a dry
// run fills with nothing but checks all the same.
type memStaging struct {
	target string
	dry    bool
	mu     sync.Mutex
	tree   memTree
}

func (s *memStaging) Target() string { return s.target }

// Mkdir makes a directory whose parent exists, as os.Mkdir does.
func (s *memStaging) Mkdir(name string, perm fs.FileMode) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.free(n); err != nil {
		return err
	}
	s.tree.dirs[n] = perm.Perm()
	return nil
}

// Create makes a new file whose parent exists; it is staged on Close.
func (s *memStaging) Create(name string, perm fs.FileMode) (io.WriteCloser, error) {
	n, err := clean(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.free(n); err != nil {
		return nil, err
	}
	// Reserved now, so that a second Create of the name fails like O_EXCL.
	s.tree.files[n] = memFile{perm: perm.Perm()}
	return &memWriter{s: s, name: n, perm: perm.Perm()}, nil
}

// free checks that n does not exist and that its parent does. The caller
// holds mu.
func (s *memStaging) free(n string) error {
	_, isFile := s.tree.files[n]
	_, isDir := s.tree.dirs[n]
	if isFile || isDir {
		return &fs.PathError{Op: "create", Path: n, Err: fs.ErrExist}
	}
	if p := path.Dir(n); p != "." {
		if _, ok := s.tree.dirs[p]; !ok {
			return notExist("create", n)
		}
	}
	return nil
}

type memWriter struct {
	s    *memStaging
	name string
	perm fs.FileMode
	buf  bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *memWriter) Close() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	data := w.buf.Bytes()
	if w.s.dry {
		data = nil // a dry run keeps nothing
	}
	w.s.tree.files[w.name] = memFile{data: data, perm: w.perm, mod: time.Now()}
	return nil
}

// SnapshotStore is Snapshot for any store, read through List, Stat and
// Read: every entry but those named in skip (and what is under them),
// with its mode and, for files, its size and SHA-256.
func SnapshotStore(t testing.TB, s state.Store, skip ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	snap := map[string]string{}
	var walk func(dir string)
	walk = func(dir string) {
		names, err := s.List(ctx, dir)
		if err != nil {
			t.Fatalf("snapshot: list %q: %v", dir, err)
		}
		for _, n := range names {
			rel := path.Join(dir, n)
			if slices.Contains(skip, rel) {
				continue
			}
			info, err := s.Stat(ctx, rel)
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			if info.IsDir() {
				snap[rel] = info.Mode().String()
				walk(rel)
				continue
			}
			b, err := s.Read(ctx, rel)
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			if int64(len(b)) != info.Size() {
				t.Errorf("snapshot: Stat of %s says %d bytes, Read gives %d", rel, info.Size(), len(b))
			}
			sum := sha256.Sum256(b)
			snap[rel] = fmt.Sprintf("%s %d %s", info.Mode(), len(b), hex.EncodeToString(sum[:]))
		}
	}
	walk("")
	return snap
}
