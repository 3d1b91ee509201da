package admintoken

import (
	"context"
	"io/fs"
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// recordingStore records each Apply's names, and every write or delete
// made outside an Apply.
type recordingStore struct {
	*state.Dir
	applies [][]string
	loose   []string
}

func (r *recordingStore) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	r.loose = append(r.loose, name)
	return r.Dir.Write(ctx, name, data, perm)
}

func (r *recordingStore) Delete(ctx context.Context, name string) error {
	r.loose = append(r.loose, "-"+name)
	return r.Dir.Delete(ctx, name)
}

func (r *recordingStore) Apply(ctx context.Context, c state.Change) error {
	var names []string
	for _, w := range c.Writes {
		names = append(names, w.Name)
	}
	slices.Sort(names)
	r.applies = append(r.applies, names)
	return r.Dir.Apply(ctx, c)
}

// TestEveryChangeIsOneApply: creating and revoking a token are one Apply
// each, and a refused one writes nothing.
func TestEveryChangeIsOneApply(t *testing.T) {
	one := []string{File}
	tests := []struct {
		name string
		do   func(s state.Store) error
		want []string // nil: no Apply
	}{
		{"create", func(s state.Store) error { _, err := Create(ctx, s, "new", t0); return err }, one},
		{"create, name taken", func(s state.Store) error {
			if _, err := Create(ctx, s, "ci", t0); err == nil {
				t.Error("a second token called ci was created")
			}
			return nil
		}, nil},
		{"revoke", func(s state.Store) error { return Revoke(ctx, s, "ci") }, one},
		{"revoke, no such token", func(s state.Store) error {
			if err := Revoke(ctx, s, "nope"); err == nil {
				t.Error("revoking a missing token succeeded")
			}
			return nil
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := open(t)
			mustCreate(t, d, "ci")
			r := &recordingStore{Dir: d}
			if err := tc.do(r); err != nil {
				t.Fatal(err)
			}
			if len(r.loose) != 0 {
				t.Errorf("single writes and deletes %q, want none", r.loose)
			}
			switch {
			case tc.want == nil && len(r.applies) != 0:
				t.Errorf("applies %q, want none", r.applies)
			case tc.want != nil && (len(r.applies) != 1 || !slices.Equal(r.applies[0], tc.want)):
				t.Errorf("applies %q, want one of %q", r.applies, tc.want)
			}
		})
	}
}
