package sni

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// editPool is the hosts FuzzEdit adds and removes, and editProbes the
// server names it looks up: exact hosts, names only a wildcard covers,
// and misses.
var (
	editPool   = []string{"a.example.com", "b.example.com", "*.example.com", "x.sub.example.com", "*.sub.example.com", "example.org", "*.example.org", "c.example.com"}
	editProbes = []string{"a.example.com", "b.example.com", "c.example.com", "zz.example.com", "x.sub.example.com", "y.sub.example.com", "example.org", "w.example.org", "example.com", "nothing.test"}
)

// refLookup is the selection rule over a plain map of hosts.
func refLookup(hosts map[string]int, name string) (int, bool) {
	if v, ok := hosts[name]; ok && !strings.HasPrefix(name, "*.") {
		return v, true
	}
	if _, rest, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, ".") {
		v, ok := hosts["*."+rest]
		return v, ok
	}
	return 0, false
}

// FuzzEdit drives Edit, Add, Remove and Build with the bytes of ops (per
// byte: an operation and a host of editPool) and checks every Index built
// against a plain map, and that an Index once built never changes, while
// compaction (made frequent here) folds overlays into new bases.
func FuzzEdit(f *testing.F) {
	f.Add([]byte{0, 3, 6, 9, 2, 1, 4, 5, 8, 11, 14, 2, 17, 20, 23})
	f.Add([]byte{0, 0, 1, 1, 2, 2, 0, 1, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 512 {
			ops = ops[:512]
		}
		old := compactMin
		compactMin = 2
		defer func() { compactMin = old }()
		type built struct {
			x   *Index[int]
			ref map[string]int
		}
		var gens []built
		ref := map[string]int{}
		b := NewBuilder[int](0)
		check := func(g built) {
			for _, p := range editProbes {
				got, ok := g.x.Lookup(p)
				want, wantOK := refLookup(g.ref, p)
				if ok != wantOK || got != want {
					t.Fatalf("generation of %v: Lookup(%q) = %d, %v; want %d, %v", g.ref, p, got, ok, want, wantOK)
				}
			}
			if g.x.Len() != len(g.ref) {
				t.Fatalf("Len %d, want %d", g.x.Len(), len(g.ref))
			}
		}
		for i, op := range ops {
			host := editPool[int(op/3)%len(editPool)]
			switch op % 3 {
			case 0:
				_, dup := ref[host]
				err := b.Add(host, i)
				if dup != (err != nil) {
					t.Fatalf("Add(%q) with the host mapped %v: err %v", host, dup, err)
				}
				if !dup {
					ref[host] = i
				}
			case 1:
				if err := b.Remove(host); err != nil {
					t.Fatal(err)
				}
				delete(ref, host)
			case 2:
				gens = append(gens, built{b.Build(), maps.Clone(ref)})
				b = gens[len(gens)-1].x.Edit()
			}
			if v, ok := b.Get(host); ok != (ref[host] == v && hasKey(ref, host)) {
				t.Fatalf("Get(%q) = %d, %v with %v", host, v, ok, ref)
			}
		}
		gens = append(gens, built{b.Build(), maps.Clone(ref)})
		for _, g := range gens {
			check(g)
		}
	})
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// TestEditCompacts: an overlay past compactAt is folded into a new base,
// and the Index it came from keeps its own.
func TestEditCompacts(t *testing.T) {
	x := mustBuild(t, "a.example.com")
	var y *Index[string]
	for i := range compactAt(1) + 1 {
		b := x.Edit()
		if y != nil {
			b = y.Edit()
		}
		if err := b.Add(fmt.Sprintf("h%d.example.com", i), "v"); err != nil {
			t.Fatal(err)
		}
		y = b.Build()
	}
	if y.over != nil {
		t.Errorf("overlay of %d hosts not compacted (compactAt %d)", y.over.size(), compactAt(y.n))
	}
	if x.Len() != 1 || x.exact.live != 1 {
		t.Errorf("the first Index changed: %d hosts", x.Len())
	}
	if _, ok := y.Lookup("a.example.com"); !ok || y.Len() != compactAt(1)+2 {
		t.Errorf("compacted Index: a %v, %d hosts", ok, y.Len())
	}
}
