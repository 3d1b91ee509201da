package sni

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state/hostname"
)

func mustBuild(t testing.TB, hosts ...string) *Index[string] {
	t.Helper()
	b := NewBuilder[string](len(hosts))
	for _, h := range hosts {
		if err := b.Add(h, h); err != nil {
			t.Fatal(err)
		}
	}
	return b.Build()
}

func TestLookupPrecedence(t *testing.T) {
	idn, err := hostname.Normalize("bücher.example.org")
	if err != nil {
		t.Fatal(err)
	}
	x := mustBuild(t,
		"a.example.com", "*.example.com", "*.sub.example.com", "example.org",
		idn, "*.xn--mnchen-3ya.example.net")
	tests := []struct {
		sni, want string // want "" is a miss
	}{
		{"a.example.com", "a.example.com"}, // exact beats wildcard
		{"b.example.com", "*.example.com"},
		{"example.com", ""},     // a wildcard needs its label
		{"x.b.example.com", ""}, // and covers only one
		{"x.sub.example.com", "*.sub.example.com"},
		{"A.Example.COM", "a.example.com"}, // case-insensitive
		{"B.EXAMPLE.COM", "*.example.com"},
		{"a.example.com.", "a.example.com"}, // trailing dot
		{"b.example.com.", "*.example.com"},
		{"example.org", "example.org"},
		{"www.example.org", ""}, // no wildcard for example.org
		{"", ""},                // no SNI
		{".", ""},
		{".example.com", ""}, // empty first label
		{"..example.com", ""},
		{"a..example.com", ""},
		{"example", ""},
		{"xn--bcher-kva.example.org", idn}, // IDN as punycode
		{"XN--BCHER-KVA.example.org", idn},
		{"bücher.example.org", ""}, // SNI is ASCII; clients send punycode
		{"stadt.xn--mnchen-3ya.example.net", "*.xn--mnchen-3ya.example.net"},
		{"*.example.com", "*.example.com"}, // as hostname.Matches has it
	}
	for _, tc := range tests {
		got, ok := x.Lookup(tc.sni)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tc.sni, got, ok, tc.want)
		}
		// The index must agree with the reference matcher.
		if ok && !hostname.Matches(got, hostname.NormalizeSNI(tc.sni)) {
			t.Errorf("Lookup(%q) = %q, which hostname.Matches rejects", tc.sni, got)
		}
	}
	if n := x.Len(); n != 6 {
		t.Errorf("Len = %d, want 6", n)
	}
}

func TestEmptyIndex(t *testing.T) {
	x := NewBuilder[int](0).Build()
	if v, ok := x.Lookup("a.example.com"); ok || v != 0 {
		t.Errorf("Lookup on empty index = %v, %v", v, ok)
	}
	if x.Len() != 0 {
		t.Errorf("Len = %d", x.Len())
	}
}

func TestAddRefuses(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		want  string
	}{
		{"duplicate exact", []string{"a.example.com", "a.example.com"}, "added twice"},
		{"duplicate wildcard", []string{"*.example.com", "*.example.com"}, "added twice"},
		{"empty", []string{""}, "not a normalised"},
		{"bare wildcard", []string{"*."}, "not a normalised"},
		{"star", []string{"*"}, "not a normalised"},
		{"inner star", []string{"*.*.example.com"}, "not a normalised"},
		{"upper case", []string{"A.example.com"}, "not a normalised"},
		{"trailing dot", []string{"a.example.com."}, "not a normalised"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder[int](0)
			var err error
			for i, h := range tc.hosts {
				if err = b.Add(h, i); err != nil {
					break
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			// The refused host changed nothing.
			x := b.Build()
			if x.Len() != len(tc.hosts)-1 {
				t.Errorf("Len = %d, want %d", x.Len(), len(tc.hosts)-1)
			}
			if len(tc.hosts) == 2 {
				if v, _ := x.Lookup("a.example.com"); v != 0 {
					t.Errorf("duplicate replaced the first value: got %d", v)
				}
			}
		})
	}
}

func TestExactAndWildcardSameSuffixAreDistinct(t *testing.T) {
	// "example.com" and "*.example.com" share a key in different maps.
	x := mustBuild(t, "example.com", "*.example.com")
	if v, _ := x.Lookup("example.com"); v != "example.com" {
		t.Errorf("got %q", v)
	}
	if v, _ := x.Lookup("a.example.com"); v != "*.example.com" {
		t.Errorf("got %q", v)
	}
}

func TestAddAfterBuild(t *testing.T) {
	b := NewBuilder[int](0)
	if err := b.Add("a.example.com", 1); err != nil {
		t.Fatal(err)
	}
	x := b.Build()
	if err := b.Add("b.example.com", 2); err == nil {
		t.Fatal("Add after Build succeeded")
	}
	if b.Build() != x || x.Len() != 1 {
		t.Errorf("Build changed after a refused Add")
	}
}

func TestLookupAllocs(t *testing.T) {
	x := mustBuild(t, "a.example.com", "*.example.net")
	for _, name := range []string{"a.example.com", "b.example.net", "nothing.example.org", "", ".example.net"} {
		if n := testing.AllocsPerRun(100, func() { x.Lookup(name) }); n != 0 {
			t.Errorf("Lookup(%q): %v allocs, want 0", name, n)
		}
	}
}

func TestLookupConcurrent(t *testing.T) {
	b := NewBuilder[int](1000)
	for i := range 1000 {
		h := fmt.Sprintf("h%d.example.com", i)
		if i%2 == 1 {
			h = fmt.Sprintf("*.w%d.example.net", i)
		}
		if err := b.Add(h, i); err != nil {
			t.Fatal(err)
		}
	}
	x := b.Build()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				name := fmt.Sprintf("h%d.example.com", i)
				if i%2 == 1 {
					name = fmt.Sprintf("x%d.w%d.example.net", g, i)
				}
				if v, ok := x.Lookup(name); !ok || v != i {
					t.Errorf("Lookup(%q) = %d, %v", name, v, ok)
					return
				}
				if _, ok := x.Lookup(fmt.Sprintf("m%d.example.org", i)); ok {
					t.Errorf("miss matched")
					return
				}
			}
		})
	}
	wg.Wait()
}
