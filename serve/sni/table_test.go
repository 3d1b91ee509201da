package sni

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
)

// A table maps, overwrites, removes and maps again through growth and
// through the removed keys' marks, and each sees what is mapped, once.
func TestTable(t *testing.T) {
	tests := []struct {
		name string
		n    int // keys set
		del  int // of them removed, every other one up to del
		hint int
	}{
		{"empty", 0, 0, 0},
		{"one", 1, 0, 0},
		{"grows from zero", 1000, 0, 0},
		{"sized", 1000, 0, 1000},
		{"removals", 1000, 800, 10},
		{"all removed", 64, 64, 0},
		{"empty key", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable[int](tt.hint)
			want := map[string]int{}
			for i := range tt.n {
				k := fmt.Sprintf("h%d.example.com", i)
				tb.set(k, -1)
				tb.set(k, i) // overwrite
				want[k] = i
			}
			if tt.name == "empty key" {
				tb.set("", 7)
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
				tb.set(k, 10*i)
				want[k] = 10 * i
			}
			tb.trim()
			if tb.live != len(want) {
				t.Errorf("live = %d, want %d", tb.live, len(want))
			}
			for k, v := range want {
				if got, ok := tb.get(k); !ok || got != v {
					t.Errorf("get(%q) = %d, %v; want %d", k, got, ok, v)
				}
			}
			for _, k := range []string{"h0.example.co", "x.example.com", fmt.Sprintf("h%d.example.com", tt.n)} {
				if _, ok := tb.get(k); ok {
					t.Errorf("get(%q) found a key never set", k)
				}
			}
			seen := map[string]int{}
			tb.each(func(k string, v int) {
				if _, dup := seen[k]; dup {
					t.Errorf("each: %q twice", k)
				}
				seen[k] = v
			})
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Errorf("each saw %d keys, want %d", len(seen), len(want))
			}
		})
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

// The garbage collector walks only an Index's values: at 100k mappings a
// map[string]T base was about 40 bytes per host it scanned on every cycle.
func TestIndexBaseIsHardlyScanned(t *testing.T) {
	const n = 50000
	scan := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	vals := make([]int, n)
	before := scan()
	b := NewBuilder[*int](n)
	for i := range n {
		if err := b.Add(fmt.Sprintf("h%06d.example.com", i), &vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	x := b.Build()
	after := scan()
	runtime.KeepAlive(x)
	// The values are 8 bytes a host; the rest is slack for whatever the
	// runtime allocates meanwhile.
	if per := float64(int64(after)-int64(before)) / n; per > 16 {
		t.Errorf("an Index of %d hosts adds %.1f scannable bytes per host; want at most 16", n, per)
	}
}
