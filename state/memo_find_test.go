package state

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestMemoFindIsBinarySearch: find, whatever entry it found last, gives
// what a binary search gives, for names present (near the last one or
// far) and absent (between entries, before the first, after the last).
func TestMemoFindIsBinarySearch(t *testing.T) {
	var names []string
	for i := range 50 {
		for _, f := range []string{"cert.pem", "key.pem", "meta.toml"} {
			names = append(names, fmt.Sprintf("certs/public/m%03d/%s", i*2, f))
		}
	}
	slices.Sort(names)
	probes := slices.Clone(names)
	probes = append(probes, "", "a", "zzz", "certs/public/m001/cert.pem", "certs/public/m000/cert.pe", "certs/public/m098/meta.tomll")
	for _, n := range []int{0, 1, len(names)} {
		m := &Memo{}
		for _, name := range names[:n] {
			m.entries = append(m.entries, memoEntry{name: name})
		}
		for _, hint := range []int{0, 5, n / 2, n - 1, n + 3} {
			for _, p := range probes {
				m.hint = hint
				wi, wok := slices.BinarySearchFunc(m.entries, p, func(e memoEntry, n string) int { return strings.Compare(e.name, n) })
				if i, ok := m.find(p); i != wi || ok != wok {
					t.Fatalf("%d entries, hint %d: find(%q) = %d, %v; binary search %d, %v", n, hint, p, i, ok, wi, wok)
				}
			}
		}
	}
}
