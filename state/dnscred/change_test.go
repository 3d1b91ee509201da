package dnscred

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
	for _, d := range c.Deletes {
		names = append(names, "-"+d)
	}
	for _, w := range c.Writes {
		names = append(names, w.Name)
	}
	slices.Sort(names)
	r.applies = append(r.applies, names)
	return r.Dir.Apply(ctx, c)
}

// TestEveryChangeIsOneApply: a credential's reference in p2ptls.toml and
// its token file change together, in one Apply and nothing besides.
func TestEveryChangeIsOneApply(t *testing.T) {
	tests := []struct {
		name string
		do   func(s state.Store) error
		want []string // the names of the one Apply, sorted; nil: no Apply
	}{
		{"add", func(s state.Store) error { return Add(ctx, s, cf("new"), token) }, []string{state.ConfigFile, TokenFile("new")}},
		{"replace", func(s state.Store) error { return Replace(ctx, s, cf("cf"), "another-token-0123456789") }, []string{TokenFile("cf")}},
		{"disable", func(s state.Store) error { _, err := SetEnabled(ctx, s, "cf", false); return err }, []string{state.ConfigFile}},
		{"enable, already enabled", func(s state.Store) error { _, err := SetEnabled(ctx, s, "cf", true); return err }, nil},
		{"remove", func(s state.Store) error { _, err := Remove(ctx, s, "cf"); return err }, []string{"-" + TokenFile("cf"), state.ConfigFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newStore(t)
			mustAdd(t, d, cf("cf"), token)
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
