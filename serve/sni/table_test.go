package sni

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"unsafe"
)

// tkv is a test table's value: its key behind a prefix, so that a table
// with a keyOf finds its keys inside its values, not at their start.
type tkv struct {
	s string
	n int
}

func tval(k string, n int) tkv { return tkv{fmt.Sprintf("v%d|%s", n, k), n} }

// A table maps, overwrites, removes and maps again through growth and
// through the removed keys' marks, and each sees what is mapped, once:
// with its keys copied and with them kept in its values.
func TestTable(t *testing.T) {
	tests := []struct {
		name     string
		n        int // keys set
		del      int // of them removed, every other one up to del
		hint     int
		emptyKey bool
	}{
		{"empty", 0, 0, 0, false},
		{"one", 1, 0, 0, false},
		{"grows from zero", 1000, 0, 0, false},
		{"sized", 1000, 0, 1000, false},
		{"removals", 1000, 800, 10, false},
		{"all removed", 64, 64, 0, false},
		{"empty key", 0, 0, 0, true},
	}
	inValue := func(v tkv) string { return v.s }
	keyOfs := []struct {
		name  string
		keyOf func(tkv) string
		refs  bool
	}{{"copied", nil, false}, {"in values", inValue, false}, {"in values by ref", inValue, true}, {"copied by ref", nil, true}}
	for _, tt := range tests {
		for _, k := range keyOfs {
			t.Run(tt.name+"/"+k.name, func(t *testing.T) {
				var refs Refs[tkv]
				if k.refs {
					refs = newListRefs[tkv]()
				}
				tb := newTable(tt.hint, k.keyOf, refs)
				want := map[string]int{}
				for i := range tt.n {
					k := fmt.Sprintf("h%d.example.com", i)
					tb.set(k, tval(k, -1))
					tb.set(k, tval(k, i)) // overwrite
					want[k] = i
				}
				if tt.emptyKey {
					tb.set("", tval("", 7))
					want[""] = 7
				}
				for i := 0; i < tt.del; i += 2 {
					k := fmt.Sprintf("h%d.example.com", i)
					tb.del(k)
					tb.del(k) // twice is no error
					delete(want, k)
				}
				// Mapped again after removal, and new keys past the marks.
				for i := 0; i < tt.del; i += 4 {
					k := fmt.Sprintf("h%d.example.com", i)
					tb.set(k, tval(k, 10*i))
					want[k] = 10 * i
				}
				tb.trim()
				if tb.live != len(want) {
					t.Errorf("live = %d, want %d", tb.live, len(want))
				}
				for k, v := range want {
					if got, ok := tb.get(k); !ok || got.n != v {
						t.Errorf("get(%q) = %d, %v; want %d", k, got.n, ok, v)
					}
				}
				for _, k := range []string{"h0.example.co", "x.example.com", fmt.Sprintf("h%d.example.com", tt.n)} {
					if _, ok := tb.get(k); ok {
						t.Errorf("get(%q) found a key never set", k)
					}
				}
				seen := map[string]int{}
				tb.each(func(k string, v tkv) {
					if _, dup := seen[k]; dup {
						t.Errorf("each: %q twice", k)
					}
					seen[k] = v.n
				})
				if fmt.Sprint(seen) != fmt.Sprint(want) {
					t.Errorf("each saw %d keys, want %d", len(seen), len(want))
				}
				if k.keyOf != nil && len(tb.keys) != 0 {
					t.Errorf("a table with keyOf copied %d bytes of keys", len(tb.keys))
				}
				if k.refs && len(tb.vals) != 0 {
					t.Errorf("a table with Refs kept %d values themselves", len(tb.vals))
				}
			})
		}
	}
}

// listRefs numbers values in the order first given: the Refs of a test.
type listRefs[T comparable] struct {
	vals []T
	of   map[T]uint32
}

func newListRefs[T comparable]() *listRefs[T] { return &listRefs[T]{of: map[T]uint32{}} }

func (r *listRefs[T]) Ref(v T) uint32 {
	i, ok := r.of[v]
	if !ok {
		i = uint32(len(r.vals))
		r.vals = append(r.vals, v)
		r.of[v] = i
	}
	return i
}

func (r *listRefs[T]) Deref(i uint32) T { return r.vals[i] }

// An Index built with NewBuilderOn holds no copy of its hosts: every key
// it compares is a view of its value's keyOf, through edits and
// compaction, with its values kept or referred to by Refs; a host that is
// not in keyOf is refused.
func TestIndexOnKeepsNoCopyOfHosts(t *testing.T) {
	for _, byRef := range []bool{false, true} {
		t.Run(fmt.Sprintf("refs=%v", byRef), func(t *testing.T) {
			var refs Refs[*tkv]
			if byRef {
				refs = newListRefs[*tkv]()
			}
			testIndexOnKeepsNoCopyOfHosts(t, refs)
		})
	}
}

func testIndexOnKeepsNoCopyOfHosts(t *testing.T, refs Refs[*tkv]) {
	old := compactMin
	compactMin = 2
	defer func() { compactMin = old }()
	keyOf := func(v *tkv) string { return v.s }
	inValue := func(x *Index[*tkv]) {
		t.Helper()
		for _, tb := range []*table[*tkv]{x.exact, x.wild} {
			if len(tb.keys) != 0 {
				t.Errorf("the base copied %d bytes of hosts", len(tb.keys))
			}
			if refs != nil && len(tb.vals) != 0 {
				t.Errorf("the base kept %d values, not their Refs", len(tb.vals))
			}
			tb.each(func(k string, v *tkv) {
				p, s := uintptr(unsafe.Pointer(unsafe.StringData(k))), uintptr(unsafe.Pointer(unsafe.StringData(v.s)))
				if len(k) > 0 && (p < s || p+uintptr(len(k)) > s+uintptr(len(v.s))) {
					t.Errorf("key %q is not a view of its value %q", k, v.s)
				}
			})
		}
	}
	b := NewBuilderOn(0, keyOf, refs)
	vals := map[string]*tkv{}
	for i := range 40 {
		h := fmt.Sprintf("h%d.example.com", i)
		if i%4 == 3 {
			h = fmt.Sprintf("*.w%d.example.net", i)
		}
		v := &tkv{s: fmt.Sprintf("m%d|up|%s\x00", i, h), n: i}
		vals[h] = v
		if err := b.Add(h, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add("stranger.example.com", &tkv{s: "m99|other.example.com"}); err == nil {
		t.Error("Add of a host its value's keyOf does not hold: no error")
	}
	x := b.Build()
	inValue(x)
	// Edits past compactAt fold the overlay into new bases.
	for i := range 20 {
		b := x.Edit()
		h := fmt.Sprintf("h%d.example.com", 4*i)
		if err := b.Remove(h); err != nil {
			t.Fatal(err)
		}
		v := &tkv{s: "moved|" + h, n: 100 + i}
		vals[h] = v
		if err := b.Add(h, v); err != nil {
			t.Fatal(err)
		}
		x = b.Build()
	}
	if x.over != nil && x.over.size() > compactAt(x.n) {
		t.Fatalf("not compacted: overlay of %d", x.over.size())
	}
	inValue(x)
	for h, v := range vals {
		name := h
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			name = "a." + rest
		}
		if got, ok := x.Lookup(name); !ok || got != v {
			t.Errorf("Lookup(%q) = %v, %v; want %v", name, got, ok, v)
		}
	}
}

// A lookup in a built Index allocates nothing, exact or wildcard, hit or miss.
func TestTableLookupDoesNotAllocate(t *testing.T) {
	b := NewBuilder[int](0)
	for i := range 100 {
		if err := b.Add(fmt.Sprintf("h%d.example.com", i), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add("*.w.example.com", -1); err != nil {
		t.Fatal(err)
	}
	x := b.Build()
	if n := testing.AllocsPerRun(100, func() {
		x.Lookup("h42.example.com")
		x.Lookup("a.w.example.com")
		x.Lookup("nobody.example.com")
	}); n != 0 {
		t.Errorf("lookups allocate %v times", n)
	}
}

// arrayRefs refers to the elements of one array by their index.
type arrayRefs []int

func (a arrayRefs) Ref(p *int) uint32 {
	return uint32((uintptr(unsafe.Pointer(p)) - uintptr(unsafe.Pointer(&a[0]))) / unsafe.Sizeof(a[0]))
}

func (a arrayRefs) Deref(i uint32) *int { return &a[i] }

// The garbage collector walks only an Index's values, and none of a base
// that keeps them by Refs: at 100k mappings a map[string]T base was about
// 40 bytes per host it scanned on every cycle.
func TestIndexBaseIsHardlyScanned(t *testing.T) {
	const n = 50000
	scan := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	tests := []struct {
		name string
		refs bool
		max  float64 // scannable bytes per host
	}{
		// The values are 8 bytes a host; the rest is slack for whatever
		// the runtime allocates meanwhile.
		{"values", false, 16},
		{"refs", true, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vals := make(arrayRefs, n)
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("h%06d.example.com", i)
			}
			b := NewBuilder[*int](n)
			before := scan()
			if tc.refs {
				b = NewBuilderOn(n, func(p *int) string { return hosts[*p] }, Refs[*int](vals))
			}
			for i := range n {
				vals[i] = i
				if err := b.Add(hosts[i], &vals[i]); err != nil {
					t.Fatal(err)
				}
			}
			x := b.Build()
			after := scan()
			for i := range n {
				if v, ok := x.Lookup(hosts[i]); !ok || v != &vals[i] {
					t.Fatalf("Lookup(%q) = %p, %v; want %p", hosts[i], v, ok, &vals[i])
				}
			}
			if per := float64(int64(after)-int64(before)) / n; per > tc.max {
				t.Errorf("an Index of %d hosts adds %.1f scannable bytes per host; want at most %.0f", n, per, tc.max)
			}
		})
	}
}
