package snapshot

import (
	"context"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// overlay is a Reader of base as a Change leaves it (deletes first, as
// Store.Apply makes them), so that the copy is checked before the change
// reaches it.
type overlay struct {
	base    state.Reader
	writes  map[string]state.FileWrite
	deletes []string
}

func newOverlay(base state.Reader, c state.Change) overlay {
	o := overlay{base: base, writes: make(map[string]state.FileWrite, len(c.Writes)), deletes: c.Deletes}
	for _, w := range c.Writes {
		o.writes[path.Clean(w.Name)] = w
	}
	return o
}

func (o overlay) deleted(name string) bool {
	return slices.ContainsFunc(o.deletes, func(d string) bool { return name == d || strings.HasPrefix(name, d+"/") })
}

func (o overlay) Read(ctx context.Context, name string) ([]byte, error) {
	n := path.Clean(name)
	if w, ok := o.writes[n]; ok {
		return slices.Clone(w.Data), nil
	}
	if o.deleted(n) {
		return nil, notExist("read", name)
	}
	return o.base.Read(ctx, name)
}

func (o overlay) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	n := path.Clean(name)
	if w, ok := o.writes[n]; ok {
		return written{w}, nil
	}
	for wn := range o.writes {
		if strings.HasPrefix(wn, n+"/") {
			return dirInfo(path.Base(n)), nil
		}
	}
	if o.deleted(n) {
		return nil, notExist("stat", name)
	}
	return o.base.Stat(ctx, name)
}

func (o overlay) List(ctx context.Context, dir string) ([]string, error) {
	d := path.Clean(dir)
	if dir == "" {
		d = ""
	}
	var names []string
	if d == "" || !o.deleted(d) {
		base, err := o.base.List(ctx, dir)
		if err != nil {
			return nil, err
		}
		for _, n := range base {
			if !o.deleted(path.Join(d, n)) {
				names = append(names, n)
			}
		}
	}
	prefix := d + "/"
	if d == "" {
		prefix = ""
	}
	for wn := range o.writes {
		if rest, ok := strings.CutPrefix(wn, prefix); ok {
			first, _, _ := strings.Cut(rest, "/")
			names = append(names, first)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// written describes a file of the change.
type written struct{ w state.FileWrite }

func (i written) Name() string       { return path.Base(i.w.Name) }
func (i written) Size() int64        { return int64(len(i.w.Data)) }
func (i written) Mode() fs.FileMode  { return i.w.Perm }
func (i written) ModTime() time.Time { return time.Time{} }
func (i written) IsDir() bool        { return false }
func (i written) Sys() any           { return nil }

// dirInfo describes a directory the change creates.
type dirInfo string

func (i dirInfo) Name() string       { return string(i) }
func (i dirInfo) Size() int64        { return 0 }
func (i dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o700 }
func (i dirInfo) ModTime() time.Time { return time.Time{} }
func (i dirInfo) IsDir() bool        { return true }
func (i dirInfo) Sys() any           { return nil }
