package mappings

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// TestEveryChangeIsOneApply: adding, importing, regenerating and removing
// a mapping each change the state with exactly one Apply that holds the
// mapping's record and files (never p2ptls.toml, whose part they leave as
// it was), and no write or delete besides.
func TestEveryChangeIsOneApply(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		do   func(s state.Store) error
		want []string // names the Apply holds
	}{
		{"add", func(s state.Store) error {
			_, _, err := Add(ctx, s, selfSignedIn("new", "web", 0, "new.example.com"), now0)
			return err
		}, []string{state.RecordName("new"), keyName("new"), certName("new"), metaName("new")}},
		{"import", func(s state.Store) error {
			_, _, err := Import(ctx, s, strings.NewReader(`{"id":"i1","listener":"web","hosts":["i1.example.com"],"source":"self-signed"}
{"id":"i2","listener":"api","hosts":["i2.example.com"],"source":"acme","challenge":"http-01"}
`), "test", now0)
			return err
		}, []string{state.RecordName("i1"), state.RecordName("i2"), keyName("i1"), certName("i1"), metaName("i1")}},
		{"regenerate", func(s state.Store) error { return Regenerate(ctx, s, "dev", now0.Add(day)) },
			[]string{keyName("dev"), certName("dev"), metaName("dev")}},
		{"remove", func(s state.Store) error {
			_, err := Remove(ctx, s, "dev")
			return err
		}, []string{"-" + state.RecordName("dev"), "-" + MappingDir("dev")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newStore(t)
			mustAdd(t, d, selfSignedIn("dev", "web", 0, "dev.example.com"))
			r := &statetest.Recorder{Dir: d}
			if err := tc.do(r); err != nil {
				t.Fatal(err)
			}
			if len(r.Applies) != 1 || len(r.Loose) != 0 {
				t.Fatalf("applies %q, single writes and deletes %q; want one Apply and nothing else", r.Applies, r.Loose)
			}
			got := r.Applies[0]
			want := slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("the change holds %q, want %q", got, want)
			}
		})
	}
}
