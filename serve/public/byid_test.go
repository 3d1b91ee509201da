package public

import (
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"github.com/p2pstream/p2ptls/state"
)

// An idIndex finds every entry set by its id, a later entry of the same
// id replacing the earlier, through growth from empty or a size, removals
// and entries set again after them.
func TestIDIndex(t *testing.T) {
	mk := func(id string, digest uint64) *entry {
		return newEntry(&state.Mapping{ID: id, Source: state.SourceACME}, "web", digest, nil)
	}
	for _, tc := range []struct {
		name         string
		reset, n, rm int // rm: every other id below it removed
	}{
		{"zero", -1, 0, 0},
		{"grows from zero", -1, 5000, 0},
		{"sized", 5000, 5000, 0},
		{"removals", 100, 5000, 4000},
		{"all removed", 0, 64, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var x idIndex
			if tc.reset >= 0 {
				x.reset(tc.reset, newEntryDir())
			}
			want := map[string]uint64{}
			for i := range tc.n {
				id := fmt.Sprintf("m%d", i)
				x.set(mk(id, 0))
				x.set(mk(id, uint64(i))) // replaces
				want[id] = uint64(i)
			}
			for i := 0; i < tc.rm; i += 2 {
				id := fmt.Sprintf("m%d", i)
				x.del(id)
				x.del(id)
				delete(want, id)
			}
			for i := 0; i < tc.rm; i += 4 {
				id := fmt.Sprintf("m%d", i)
				x.set(mk(id, 7))
				want[id] = 7
			}
			if x.len() != len(want) {
				t.Errorf("len = %d, want %d", x.len(), len(want))
			}
			for id, d := range want {
				if e := x.get(id); e == nil || e.id() != id || e.digest != d {
					t.Fatalf("get(%q) = %+v, want digest %d", id, e, d)
				}
			}
			for _, id := range []string{"", "m", fmt.Sprintf("m%d", tc.n)} {
				if e := x.get(id); e != nil {
					t.Errorf("get(%q) found %q", id, e.id())
				}
			}
			if len(x.slots) > 0 && 8*x.used > 7*len(x.slots) {
				t.Errorf("%d of %d slots used", x.used, len(x.slots))
			}
		})
	}
}

// An idIndex of 100k entries is at most 512 KiB, none of which the
// collector walks: a map[string]*entry was about 3.3 MiB, all walked, a
// table of pointers 1 MiB.
func TestIDIndexIsSmall(t *testing.T) {
	var x idIndex
	x.reset(100_000, newEntryDir())
	if size := uintptr(len(x.slots)) * unsafe.Sizeof(x.slots[0]); size > 512<<10 {
		t.Errorf("an idIndex for 100k entries is %d bytes; want at most 512 KiB", size)
	}
	if reflect.TypeOf(x.slots).Elem().Kind() != reflect.Uint32 {
		t.Errorf("an idIndex's slots are %v, not references without pointers", reflect.TypeOf(x.slots))
	}
}
