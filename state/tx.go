package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// Tx is one change of the state in the making, under the lock (see
// Update): the config as loaded, for fn to change, and the files fn
// writes and deletes, held until Update commits them with the config as
// one Store.Apply. It is a Store itself, so that code which writes a
// mapping's files writes them into the change; its reads see the change.
type Tx struct {
	Config *Config

	s       Store
	writes  map[string]FileWrite
	order   []string // of writes, first write first
	deletes []string
}

var _ Store = (*Tx)(nil)

// Update runs fn on the current config under the state lock and, when fn
// succeeds, commits what fn changed of the config and every file fn wrote
// or deleted through the Tx as one change. When fn or validation fails, or
// the state does not load, nothing is written.
func Update(ctx context.Context, s Store, purpose string, fn func(*Tx) error) (err error) {
	if d, ok := s.(*Dir); ok {
		d.pinMemos() // from the load to the revision, which unlock writes
		defer d.unpinMemos()
	}
	unlock, err := s.Lock(ctx, purpose)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	cfg, err := loadConfig(ctx, s, true)
	if err != nil {
		return err
	}
	tx := &Tx{Config: cfg, s: s, writes: map[string]FileWrite{}}
	if err := fn(tx); err != nil {
		return err
	}
	// Only what changed is saved: p2ptls.toml when its own part did, the
	// record of each mapping added or changed, a delete for each removed;
	// a schema_version 1 state is migrated. After fn's files, so that a
	// store whose Apply is not atomic never names a mapping without them.
	c, _, err := tx.Config.change(ctx, tx, time.Now())
	if err != nil {
		return err
	}
	_ = tx.Apply(ctx, c)
	if all := tx.change(); !all.Empty() {
		d, local := s.(*Dir)
		if local && cfg.loaded.trusted {
			if err := d.checkCommitted(all); err != nil {
				return err
			}
		}
		if err := s.Apply(ctx, all); err != nil {
			return fmt.Errorf("save the change (%s): %w", purpose, err)
		}
		if local {
			d.memoCommitted(all, tx.Config.namesKey())
		}
	}
	return nil
}

// change is what the Tx holds, in the order it was made.
func (t *Tx) change() Change {
	c := Change{Deletes: t.deletes}
	for _, name := range t.order {
		c.Writes = append(c.Writes, t.writes[name])
	}
	return c
}

// Read returns name as the change leaves it.
func (t *Tx) Read(ctx context.Context, name string) ([]byte, error) {
	if w, ok := t.writes[path.Clean(name)]; ok {
		return slices.Clone(w.Data), nil
	}
	if t.deleted(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return t.s.Read(ctx, name)
}

// Stat describes name as the change leaves it.
func (t *Tx) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	if w, ok := t.writes[path.Clean(name)]; ok {
		return stagedInfo{w}, nil
	}
	if t.deleted(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return t.s.Stat(ctx, name)
}

// List lists dir as the change leaves it.
func (t *Tx) List(ctx context.Context, dir string) ([]string, error) {
	names := []string{}
	if !t.deleted(dir) {
		var err error
		if names, err = t.s.List(ctx, dir); err != nil {
			return nil, err
		}
		names = slices.DeleteFunc(names, func(n string) bool { return t.deleted(path.Join(dir, n)) })
	}
	prefix := path.Clean(dir) + "/"
	if dir == "" {
		prefix = ""
	}
	for name := range t.writes {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			first, _, _ := strings.Cut(rest, "/")
			if !slices.Contains(names, first) {
				names = append(names, first)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// Write adds a write to the change; the last write of a name wins.
func (t *Tx) Write(_ context.Context, name string, data []byte, perm fs.FileMode) error {
	name = path.Clean(name)
	if _, ok := t.writes[name]; !ok {
		t.order = append(t.order, name)
	}
	t.writes[name] = FileWrite{Name: name, Data: slices.Clone(data), Perm: perm}
	return nil
}

// Delete adds a delete to the change and drops the change's own writes
// under name, which it would remove anyway.
func (t *Tx) Delete(_ context.Context, name string) error {
	name = path.Clean(name)
	t.order = slices.DeleteFunc(t.order, func(n string) bool {
		if under(n, name) {
			delete(t.writes, n)
			return true
		}
		return false
	})
	t.deletes = append(t.deletes, name)
	return nil
}

// Apply adds c to the change, deletes first as Store.Apply makes them.
func (t *Tx) Apply(ctx context.Context, c Change) error {
	for _, name := range c.Deletes {
		_ = t.Delete(ctx, name)
	}
	for _, w := range c.Writes {
		_ = t.Write(ctx, w.Name, w.Data, w.Perm)
	}
	return nil
}

// Lock refuses: the change already holds the lock.
func (t *Tx) Lock(context.Context, string) (func() error, error) {
	return nil, errors.New("a change of the state cannot take the state lock again")
}

// deleted reports whether the change deletes name or a directory above it
// (Read and Stat look first at the writes, which come after the deletes).
func (t *Tx) deleted(name string) bool {
	name = path.Clean(name)
	return slices.ContainsFunc(t.deletes, func(d string) bool { return under(name, d) })
}

// under reports whether name is dir or inside it.
func under(name, dir string) bool {
	return name == dir || strings.HasPrefix(name, dir+"/")
}

// stagedInfo describes a file the change writes.
type stagedInfo struct{ w FileWrite }

func (i stagedInfo) Name() string       { return path.Base(i.w.Name) }
func (i stagedInfo) Size() int64        { return int64(len(i.w.Data)) }
func (i stagedInfo) Mode() fs.FileMode  { return i.w.Perm }
func (i stagedInfo) ModTime() time.Time { return time.Time{} }
func (i stagedInfo) IsDir() bool        { return false }
func (i stagedInfo) Sys() any           { return nil }

// Revision is the underlying store's: the change is not made until Update
// commits it.
func (t *Tx) Revision(ctx context.Context) (string, error) { return t.s.Revision(ctx) }

// Watch is the underlying store's.
func (t *Tx) Watch(ctx context.Context) <-chan struct{} { return t.s.Watch(ctx) }

// WatchChanges is the underlying store's.
func (t *Tx) WatchChanges(ctx context.Context) *Feed { return t.s.WatchChanges(ctx) }
