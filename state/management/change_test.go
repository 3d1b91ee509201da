package management

import (
	"context"
	"io/fs"
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
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

// TestEveryChangeIsOneApply: the CA, its key and the server certificate
// are written in one Apply, and an Ensure with nothing to do writes
// nothing at all.
func TestEveryChangeIsOneApply(t *testing.T) {
	ctx := context.Background()
	server := []string{ServerCertFile, ServerKeyFile}
	all := []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile, state.ConfigFile}
	tests := []struct {
		name   string
		withCA bool
		do     func(s state.Store) error
		want   []string // the names of the one Apply, sorted; nil: no Apply
	}{
		{"init", false, func(s state.Store) error { return Init(ctx, s, testNames(), now0) }, all},
		{"ensure on an empty state", false, func(s state.Store) error { _, _, err := Ensure(ctx, s, testNames(), now0); return err }, all},
		{"ensure, nothing to do", true, func(s state.Store) error { _, _, err := Ensure(ctx, s, testNames(), now0); return err }, nil},
		{"ensure, other names", true, func(s state.Store) error {
			_, _, err := Ensure(ctx, s, pki.ParseNames([]string{"other.example.com"}), now0)
			return err
		}, server},
		{"renew-server", true, func(s state.Store) error { _, err := RenewServer(ctx, s, testNames(), now0); return err }, server},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newStore(t)
			if tc.withCA {
				mustInit(t, d, testNames(), now0)
			}
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
