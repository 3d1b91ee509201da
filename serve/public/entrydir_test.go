package public

import (
	"fmt"
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// A reference names its entry in the directory that made it, for entries
// of full slabs and of slabs of one, and stays good once another
// directory numbers the same slabs its own way.
func TestEntryDirRefs(t *testing.T) {
	var a strArena
	var es []*entry
	for i := range entrySlab + 10 { // two slabs of the arena
		es = append(es, newEntry(&state.Mapping{ID: fmt.Sprintf("m%d", i)}, "web", 0, &a))
	}
	for i := range 3 { // and slabs of one
		es = append(es, newEntry(&state.Mapping{ID: fmt.Sprintf("one%d", i)}, "web", 0, nil))
	}
	d1, d2 := newEntryDir(), newEntryDir()
	refs1 := make([]uint32, len(es))
	for i, e := range es {
		refs1[i] = d1.Ref(e)
		if again := d1.Ref(e); again != refs1[i] {
			t.Fatalf("entry %s: Ref %d, then %d", e.id(), refs1[i], again)
		}
	}
	if d1.len() != 2+3 {
		t.Errorf("%d slabs numbered, want 5", d1.len())
	}
	// The second directory numbers them backwards.
	refs2 := make([]uint32, len(es))
	for i := len(es) - 1; i >= 0; i-- {
		refs2[i] = d2.Ref(es[i])
	}
	if slices.Equal(refs1, refs2) {
		t.Fatal("two directories numbered the slabs alike; the test proves nothing")
	}
	for i, e := range es {
		if got := d1.Deref(refs1[i]); got != e {
			t.Errorf("first directory: Deref(Ref(%s)) = %s", e.id(), got.id())
		}
		if got := d2.Deref(refs2[i]); got != e {
			t.Errorf("second directory: Deref(Ref(%s)) = %s", e.id(), got.id())
		}
	}
}

// Changes of a few mappings, each numbering a slab of its own, make the
// directory stale; serve then moves to a new one numbering only the slabs
// of what it serves, and serves and finds by id what it did.
func TestIncrementalChangesRenumber(t *testing.T) {
	old := renumberMin
	renumberMin = 3
	defer func() { renumberMin = old }()
	const n = 20
	f := newIncrFixture(t, n)
	f.s.mu.Lock()
	first := f.s.byID.dir
	f.s.mu.Unlock()
	for i := range 12 {
		id := fmt.Sprintf("m%02d", i)
		host := fmt.Sprintf("moved%02d.example.com", i)
		f.cert(id, host)
		f.update(func(cfg *state.Config) {
			for k := range cfg.Mappings {
				if cfg.Mappings[k].ID == id {
					cfg.Mappings[k].Hosts = []string{host}
				}
			}
		})
		f.until("change "+id+" served", func() bool { return slices.Equal(f.served(host), []string{host}) })
		f.consistent("after change " + id)
	}
	f.s.mu.Lock()
	d := f.s.byID.dir
	f.s.mu.Unlock()
	if d == first {
		t.Fatal("12 changes with renumberMin 3: still the first directory")
	}
	// The slab of the first load (its 8 unchanged entries), the slabs of
	// one of the changes since the renumbering, and those of before it
	// that are still served: at most 1 + 12.
	if d.len() > 1+12 || d.stale() {
		t.Errorf("after renumbering the directory numbers %d slabs (stale: %v)", d.len(), d.stale())
	}
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		host := fmt.Sprintf("m%02d.example.com", i)
		if i < 12 {
			host = fmt.Sprintf("moved%02d.example.com", i)
		}
		if got := f.served(host); !slices.Equal(got, []string{host}) {
			t.Errorf("%s (mapping %s) served %v", host, id, got)
		}
	}
	f.consistent("at the end")
}
