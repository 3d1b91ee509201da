package admintoken

import (
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

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
			r := &statetest.Recorder{Dir: d}
			if err := tc.do(r); err != nil {
				t.Fatal(err)
			}
			if len(r.Loose) != 0 {
				t.Errorf("single writes and deletes %q, want none", r.Loose)
			}
			switch {
			case tc.want == nil && len(r.Applies) != 0:
				t.Errorf("applies %q, want none", r.Applies)
			case tc.want != nil && (len(r.Applies) != 1 || !slices.Equal(r.Applies[0], tc.want)):
				t.Errorf("applies %q, want one of %q", r.Applies, tc.want)
			}
		})
	}
}
