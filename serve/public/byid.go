package public

import (
	"hash/maphash"
	"math/bits"
)

// idIndex is every served entry by its mapping's id: open addressing over
// the entries themselves, whose id is the key, so a slot is one pointer and
// no key. A map[string]*entry was about 33 bytes an entry at 100k, all of
// it walked by the garbage collector on every cycle; this is at most 8 per
// slot at seven eighths full, 1 MiB. Only reloads look it up (a few per
// change, under the server's lock), so the longer probes of a full table
// cost nothing a handshake sees. The zero idIndex is empty and ready.
type idIndex struct {
	slots []*entry // nil empty, idTomb removed; a power of two long
	used  int      // slots not nil, removed ones included
	live  int
}

// idTomb marks a removed entry's slot: lookups probe past it.
var idTomb = new(entry)

var idSeed = maphash.MakeSeed()

// reset empties x, with room for n entries.
func (x *idIndex) reset(n int) {
	*x = idIndex{slots: make([]*entry, idSlotsFor(n))}
}

// idSlotsFor is the power of two that holds n entries at most seven
// eighths full.
func idSlotsFor(n int) int { return 1 << bits.Len(uint(max(8, n+n/7))) }

func (x *idIndex) len() int { return x.live }

// find is id's slot, or the free slot where it would go (found false).
func (x *idIndex) find(id string) (slot int, found bool) {
	mask := len(x.slots) - 1
	for i := int(maphash.String(idSeed, id)) & mask; ; i = (i + 1) & mask {
		switch e := x.slots[i]; {
		case e == nil:
			return i, false
		case e != idTomb && e.id() == id:
			return i, true
		}
	}
}

// get is the entry of id, nil for none.
func (x *idIndex) get(id string) *entry {
	if x.live == 0 {
		return nil
	}
	if i, ok := x.find(id); ok {
		return x.slots[i]
	}
	return nil
}

// set makes e the entry of its id.
func (x *idIndex) set(e *entry) {
	if 8*(x.used+1) > 7*len(x.slots) {
		x.rehash(idSlotsFor(x.live + 1))
	}
	i, ok := x.find(e.id())
	if !ok {
		x.used++
		x.live++
	}
	x.slots[i] = e
}

// del removes the entry of id, if there is one.
func (x *idIndex) del(id string) {
	if x.live == 0 {
		return
	}
	if i, ok := x.find(id); ok {
		x.slots[i] = idTomb
		x.live--
	}
}

// rehash makes the slots n long, dropping removed entries' marks.
func (x *idIndex) rehash(n int) {
	old := x.slots
	x.slots = make([]*entry, n)
	x.used = 0
	for _, e := range old {
		if e != nil && e != idTomb {
			i, _ := x.find(e.id())
			x.slots[i] = e
			x.used++
		}
	}
}
