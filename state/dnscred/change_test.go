package dnscred

import (
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

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
