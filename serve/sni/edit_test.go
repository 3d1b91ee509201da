package sni

import (
	"fmt"
	"testing"
)

// TestEditLeavesTheOriginal: an edited copy changes, the Index it was
// copied from does not (lookups in flight keep what they started with),
// and removal, re-adding and ownership follow the exact/wildcard split.
func TestEditLeavesTheOriginal(t *testing.T) {
	x := mustBuild(t, "a.example.com", "*.example.com", "b.example.com")
	b := x.Edit()
	for _, h := range []string{"a.example.com", "*.example.com", "gone.example.com"} {
		if err := b.Remove(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add("a.example.com", "new-a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("b.example.com", "twice"); err == nil {
		t.Error("Edit's builder took a host the copy already maps")
	}
	if v, ok := b.Get("b.example.com"); !ok || v != "b.example.com" {
		t.Errorf("Get(b) = %q, %v", v, ok)
	}
	if _, ok := b.Get("*.example.com"); ok {
		t.Error("Get finds a removed wildcard")
	}
	y := b.Build()
	if err := b.Remove("b.example.com"); err == nil {
		t.Error("Remove after Build is accepted")
	}
	tests := []struct {
		x         *Index[string]
		sni, want string
		name      string
	}{
		{x, "a.example.com", "a.example.com", "original exact"},
		{x, "c.example.com", "*.example.com", "original wildcard"},
		{y, "a.example.com", "new-a", "edited exact"},
		{y, "c.example.com", "", "edited wildcard removed"},
		{y, "b.example.com", "b.example.com", "edited kept"},
	}
	for _, tc := range tests {
		got, ok := tc.x.Lookup(tc.sni)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%s: Lookup(%q) = %q, %v; want %q", tc.name, tc.sni, got, ok, tc.want)
		}
	}
	if x.Len() != 3 || y.Len() != 2 {
		t.Errorf("Len: original %d (want 3), edited %d (want 2)", x.Len(), y.Len())
	}
}

// BenchmarkEdit is what an incremental reload pays per listener to change
// one mapping: edit the index, swap one host, build; each iteration builds
// on the last, so compactions are counted at their rate.
func BenchmarkEdit(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x := buildIndex(b, benchHosts(n, false))
			for i := 0; b.Loop(); i++ {
				e := x.Edit()
				_ = e.Remove(fmt.Sprintf("late%d.example.com", i-1))
				_ = e.Add(fmt.Sprintf("late%d.example.com", i), i)
				x = e.Build()
			}
		})
	}
}

// TestEditedLookupAllocs: the overlay adds map lookups, not allocations.
func TestEditedLookupAllocs(t *testing.T) {
	b := mustBuild(t, "a.example.com", "*.example.net", "gone.example.com").Edit()
	if err := b.Remove("gone.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("new.example.com", "new"); err != nil {
		t.Fatal(err)
	}
	x := b.Build()
	if x.over == nil {
		t.Fatal("a small edit was compacted; this test needs an overlay")
	}
	for _, name := range []string{"a.example.com", "b.example.net", "new.example.com", "gone.example.com", "nothing.example.org", ""} {
		if n := testing.AllocsPerRun(100, func() { x.Lookup(name) }); n != 0 {
			t.Errorf("Lookup(%q): %v allocs, want 0", name, n)
		}
	}
}
