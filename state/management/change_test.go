package management

import (
	"context"
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// TestEveryChangeIsOneApply: the CA, its key and the server certificate
// are written in one Apply, and an Ensure with nothing to do writes
// nothing at all.
func TestEveryChangeIsOneApply(t *testing.T) {
	ctx := context.Background()
	server := []string{ServerCertFile, ServerKeyFile}
	all := []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile, CARecordFile, state.ConfigFile}
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
