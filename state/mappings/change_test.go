package mappings

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// recordingStore records how a command changes the state: each Apply's
// names, and every write or delete made outside an Apply.
type recordingStore struct {
	*state.Dir
	mu      sync.Mutex
	applies [][]string // names written or deleted, per Apply
	loose   []string   // single writes and deletes
}

func (r *recordingStore) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	r.mu.Lock()
	r.loose = append(r.loose, name)
	r.mu.Unlock()
	return r.Dir.Write(ctx, name, data, perm)
}

func (r *recordingStore) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	r.loose = append(r.loose, "-"+name)
	r.mu.Unlock()
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
	r.mu.Lock()
	r.applies = append(r.applies, names)
	r.mu.Unlock()
	return r.Dir.Apply(ctx, c)
}

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
			r := &recordingStore{Dir: d}
			if err := tc.do(r); err != nil {
				t.Fatal(err)
			}
			if len(r.applies) != 1 || len(r.loose) != 0 {
				t.Fatalf("applies %q, single writes and deletes %q; want one Apply and nothing else", r.applies, r.loose)
			}
			got := r.applies[0]
			want := slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("the change holds %q, want %q", got, want)
			}
		})
	}
}
