package state

import (
	"slices"
	"strings"
)

// findNear is how far around the last entry found find looks before a
// binary search: a pass looks up each mapping's files in the order of the
// names (cert.pem, key.pem, meta.toml of one mapping, then the next's),
// two workers at once, so the next name is nearly always a few entries
// from the last. At 100k mappings a binary search of the 300k entries
// (18 steps, each comparing names that share a long prefix, on cache
// lines far apart) was a fifth of a pass's CPU.
const findNear = 8

// find is the index of name in m.entries (sorted by name), as
// slices.BinarySearchFunc gives it; the caller holds m.mu.
func (m *Memo) find(name string) (int, bool) {
	if n := len(m.entries); n > 0 {
		lo, hi := max(m.hint-findNear, 0), min(m.hint+findNear, n-1)
		for i := lo; i <= hi; i++ {
			if m.entries[i].name == name {
				m.hint = i
				return i, true
			}
		}
	}
	i, ok := slices.BinarySearchFunc(m.entries, name, func(e memoEntry, n string) int { return strings.Compare(e.name, n) })
	if ok {
		m.hint = i
	}
	return i, ok
}
