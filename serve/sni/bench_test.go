package sni

import (
	"fmt"
	"testing"
)

// benchHosts returns n hosts, alternately exact ("h12345.example.com") and
// wildcard ("*.w12345.example.net"); entry 0 is a wildcard if wildFirst, so
// an index of one entry can serve either case.
func benchHosts(n int, wildFirst bool) []string {
	hosts := make([]string, n)
	for i := range hosts {
		if (i%2 == 1) != wildFirst {
			hosts[i] = fmt.Sprintf("*.w%d.example.net", i)
		} else {
			hosts[i] = fmt.Sprintf("h%d.example.com", i)
		}
	}
	return hosts
}

func buildIndex(b *testing.B, hosts []string) *Index[int] {
	x := NewBuilder[int](len(hosts))
	for i, h := range hosts {
		if err := x.Add(h, i); err != nil {
			b.Fatal(err)
		}
	}
	return x.Build()
}

// lookupNames returns the server names a case looks up, built beforehand so
// the loop allocates nothing of its own.
func lookupNames(hosts []string, kind string) []string {
	var names []string
	for i, h := range hosts {
		switch {
		case kind == "exact" && h[0] != '*':
			names = append(names, h)
		case kind == "wildcard" && h[0] == '*':
			names = append(names, fmt.Sprintf("a%d%s", i, h[1:]))
		}
	}
	if kind == "miss" {
		// Unmapped names, and names one label too deep for a wildcard.
		for i := range 4096 {
			if i%2 == 0 {
				names = append(names, fmt.Sprintf("m%d.example.org", i))
			} else {
				names = append(names, fmt.Sprintf("a.b.w%d.example.net", i))
			}
		}
	}
	return names
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1, 10_000, 100_000} {
		for _, kind := range []string{"exact", "wildcard", "miss"} {
			b.Run(fmt.Sprintf("n=%d/%s", n, kind), func(b *testing.B) {
				hosts := benchHosts(n, kind == "wildcard")
				x := buildIndex(b, hosts)
				names := lookupNames(hosts, kind)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, ok := x.Lookup(names[i%len(names)]); ok != (kind != "miss") {
						b.Fatalf("Lookup(%q) = %v", names[i%len(names)], ok)
					}
				}
			})
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			hosts := benchHosts(n, false)
			b.ReportAllocs()
			for b.Loop() {
				buildIndex(b, hosts)
			}
		})
	}
}

func BenchmarkFallbackRecord(b *testing.B) {
	// recurring: a few misconfigured names, the usual case; flood: random
	// names beyond MaxNames, an attacker's.
	for _, tc := range []struct {
		name  string
		names int
	}{{"recurring", 64}, {"flood", 16 * MaxNames}} {
		b.Run(tc.name, func(b *testing.B) {
			names := make([]string, tc.names)
			for i := range names {
				names[i] = fmt.Sprintf("f%d.example.org", i)
			}
			c := NewFallbackCounter()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					c.Record(names[i%len(names)])
				}
			})
		})
	}
}

// BenchmarkSelect is Lookup through Select with a usable func, the way a
// handshake asks: "shadowed" names an exact host that is passed over for
// the wildcard covering it.
func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{1, 100_000} {
		for _, kind := range []string{"exact", "shadowed"} {
			b.Run(fmt.Sprintf("n=%d/%s", n, kind), func(b *testing.B) {
				x := NewBuilder[int](n + 1)
				for i := range n {
					if err := x.Add(fmt.Sprintf("h%d.example.com", i), i); err != nil {
						b.Fatal(err)
					}
				}
				if err := x.Add("*.example.com", -1); err != nil {
					b.Fatal(err)
				}
				idx := x.Build()
				names := make([]string, min(n, 4096))
				for i := range names {
					names[i] = fmt.Sprintf("h%d.example.com", i*max(1, n/len(names)))
				}
				usable := func(v int) bool { return kind == "exact" || v < 0 }
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, ok, _ := idx.Select(names[i%len(names)], usable); !ok {
						b.Fatal("miss")
					}
				}
			})
		}
	}
}
