package sni

import (
	"hash/maphash"
	"math/bits"
	"strings"
	"unsafe"
)

// table is an Index's base: keys to values by open addressing. A
// map[string]T is about 40 bytes per host that the garbage collector walks
// on every cycle, a key pointer and a value per slot; a table's keys, refs
// and slots hold no pointers, so the collector walks only vals (at 100k
// hosts, 0.8 of about 4.5 MiB), and with Refs not even those: it keeps
// each value as its 32-bit Ref in ids instead.
//
// A table either copies its keys, back to back in keys, or, when it has a
// keyOf, keeps only where each key lies in keyOf of its value: at 100k
// hosts the copies were 2.3 MiB of live heap, a second copy of the hosts
// serve keeps with its entries anyway. The zero table copies, is empty
// and ready.
type table[T any] struct {
	keys  []byte   // every key set, back to back (no keyOf)
	ends  []uint32 // where each key ends in keys (no keyOf; see key)
	refs  []keyRef // where each key lies in keyOf(vals[i]) (keyOf)
	keyOf func(T) string
	enc   Refs[T]  // nil: values kept in vals
	vals  []T      // value i (no enc)
	ids   []uint32 // enc.Ref of value i (enc)
	slots []uint32 // 0 empty, tomb removed, else 1+i; a power of two long
	used  int      // slots not empty, removed ones included
	live  int      // keys mapped
}

// keyRef is a key's place in its value's keyOf: 8 bytes where a copy of
// the key and its end were 4 more than the key's length.
type keyRef struct{ off, n uint32 }

// tomb marks a removed key's slot: lookups probe past it.
const tomb = ^uint32(0)

// tableSeed seeds every table's hash: one per process, so that a client
// cannot choose server names that collide.
var tableSeed = maphash.MakeSeed()

// newTable is a table with room for n keys before it grows, that keeps
// its keys in keyOf of their values unless keyOf is nil, and its values
// as enc's Refs unless enc is nil (see table).
func newTable[T any](n int, keyOf func(T) string, enc Refs[T]) *table[T] {
	t := &table[T]{keyOf: keyOf, enc: enc}
	if n > 0 {
		t.slots = make([]uint32, slotsFor(n))
		if keyOf != nil {
			t.refs = make([]keyRef, 0, n)
		} else {
			t.ends = make([]uint32, 0, n)
		}
		if enc != nil {
			t.ids = make([]uint32, 0, n)
		} else {
			t.vals = make([]T, 0, n)
		}
	}
	return t
}

// val is value i.
func (t *table[T]) val(i uint32) T {
	if t.enc != nil {
		return t.enc.Deref(t.ids[i])
	}
	return t.vals[i]
}

// putVal makes v value i; i == the values' count appends it.
func (t *table[T]) putVal(i uint32, v T) {
	switch {
	case t.enc == nil && int(i) == len(t.vals):
		t.vals = append(t.vals, v)
	case t.enc == nil:
		t.vals[i] = v
	case int(i) == len(t.ids):
		t.ids = append(t.ids, t.enc.Ref(v))
	default:
		t.ids[i] = t.enc.Ref(v)
	}
}

// nvals is the count of values, removed ones included.
func (t *table[T]) nvals() int { return max(len(t.vals), len(t.ids)) }

// slotsFor is the power of two that holds n keys at most three quarters
// full: probes stay short.
func slotsFor(n int) int {
	return 1 << bits.Len(uint(max(8, n+n/3)))
}

// key is key i: a view of keys, whose bytes are never written again once
// set (an append that moves them leaves the old array as it was), or of
// keyOf(val(i)). A removed key (value i zero) has none; no slot names it.
func (t *table[T]) key(i uint32) string {
	if t.keyOf != nil {
		r := t.refs[i]
		return t.keyOf(t.val(i))[r.off:][:r.n]
	}
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	if start == t.ends[i] {
		return ""
	}
	return unsafe.String(&t.keys[start], t.ends[i]-start)
}

// find is key's slot, or the empty slot where it would go (found false).
func (t *table[T]) find(key string) (slot int, found bool) {
	mask := len(t.slots) - 1
	for i := int(maphash.String(tableSeed, key)) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		switch {
		case s == 0:
			return i, false
		case s != tomb && t.key(s-1) == key:
			return i, true
		}
	}
}

func (t *table[T]) get(key string) (v T, ok bool) {
	if t.live == 0 {
		return v, false
	}
	i, ok := t.find(key)
	if !ok {
		return v, false
	}
	return t.val(t.slots[i] - 1), true
}

// keyable reports whether set may map key to v: with a keyOf, key must
// lie in keyOf(v).
func (t *table[T]) keyable(key string, v T) bool {
	return t.keyOf == nil || strings.Contains(t.keyOf(v), key)
}

// refIn is where key lies in keyOf(v); keyable(key, v) holds.
func (t *table[T]) refIn(key string, v T) keyRef {
	return keyRef{off: uint32(strings.Index(t.keyOf(v), key)), n: uint32(len(key))}
}

// set maps key to v; keyable(key, v) holds. Only a table no Index serves
// yet may be set.
func (t *table[T]) set(key string, v T) {
	if 4*(t.used+1) > 3*len(t.slots) {
		t.rehash(slotsFor(t.live + 1))
	}
	i, ok := t.find(key)
	if ok {
		k := t.slots[i] - 1
		if t.keyOf != nil {
			t.refs[k] = t.refIn(key, v) // the key now lies in v
		}
		t.putVal(k, v)
		return
	}
	if t.keyOf != nil {
		t.refs = append(t.refs, t.refIn(key, v))
	} else {
		t.keys = append(t.keys, key...)
		t.ends = append(t.ends, uint32(len(t.keys)))
	}
	n := uint32(t.nvals())
	t.putVal(n, v)
	t.slots[i] = n + 1
	t.used++
	t.live++
}

// del unmaps key; its bytes stay until the table is copied (each).
func (t *table[T]) del(key string) {
	if t.live == 0 {
		return
	}
	if i, ok := t.find(key); ok {
		if t.enc == nil {
			var zero T
			t.vals[t.slots[i]-1] = zero // not kept alive by the table
		}
		t.slots[i] = tomb
		t.live--
	}
}

// rehash makes the slots n long, dropping removed keys' marks.
func (t *table[T]) rehash(n int) {
	old := t.slots
	t.slots = make([]uint32, n)
	t.used = 0
	for _, s := range old {
		if s == 0 || s == tomb {
			continue
		}
		i, _ := t.find(t.key(s - 1))
		t.slots[i] = s
		t.used++
	}
}

// each calls fn with every mapped key and its value.
func (t *table[T]) each(fn func(key string, v T)) {
	for _, s := range t.slots {
		if s != 0 && s != tomb {
			fn(t.key(s-1), t.val(s-1))
		}
	}
}

// trim gives back what appends reserved beyond the keys set: a table is
// built once and kept for many lookups.
func (t *table[T]) trim() {
	if cap(t.keys) > len(t.keys)+len(t.keys)/8 {
		t.keys = append([]byte(nil), t.keys...)
	}
	if cap(t.ends) > len(t.ends)+len(t.ends)/8 {
		t.ends = append([]uint32(nil), t.ends...)
	}
	if cap(t.refs) > len(t.refs)+len(t.refs)/8 {
		t.refs = append([]keyRef(nil), t.refs...)
	}
	if cap(t.vals) > len(t.vals)+len(t.vals)/8 {
		t.vals = append([]T(nil), t.vals...)
	}
	if cap(t.ids) > len(t.ids)+len(t.ids)/8 {
		t.ids = append([]uint32(nil), t.ids...)
	}
}
