package public

import (
	"hash/maphash"
	"math/bits"
)

// idIndex is every served entry by its mapping's id: open addressing over
// the entries themselves, whose id is the key, so a slot is one reference
// (see entryDir) and no key. A map[string]*entry was about 33 bytes an
// entry at 100k, all of it walked by the garbage collector on every cycle;
// a slot of pointers was 8 bytes at seven eighths full, 1 MiB the
// collector walked and 100k pointers it marked; a reference is 4 bytes it
// does not look at. Only reloads look it up (a few per change, under the
// server's lock), so the longer probes of a full table cost nothing a
// handshake sees. The zero idIndex is empty and ready.
type idIndex struct {
	dir   *entryDir // what the slots refer by; a new one if nil when set
	slots []uint32  // 0 empty, idTomb removed, else 1 + dir.Ref; a power of two long
	used  int       // slots not empty, removed ones included
	live  int
}

// idTomb marks a removed entry's slot: lookups probe past it.
const idTomb = ^uint32(0)

var idSeed = maphash.MakeSeed()

// reset empties x, with room for n entries referred to by dir. It is
// called once dir's views are built: what dir numbers from now on is
// changes (see entryDir.stale).
func (x *idIndex) reset(n int, dir *entryDir) {
	*x = idIndex{dir: dir, slots: make([]uint32, idSlotsFor(n))}
	dir.markBuilt()
}

// idSlotsFor is the power of two that holds n entries at most seven
// eighths full.
func idSlotsFor(n int) int { return 1 << bits.Len(uint(max(8, n+n/7))) }

func (x *idIndex) len() int { return x.live }

// at is the entry of slot i, which is neither empty nor removed.
func (x *idIndex) at(i int) *entry { return x.dir.Deref(x.slots[i] - 1) }

// find is id's slot, or the free slot where it would go (found false).
func (x *idIndex) find(id string) (slot int, found bool) {
	mask := len(x.slots) - 1
	for i := int(maphash.String(idSeed, id)) & mask; ; i = (i + 1) & mask {
		switch s := x.slots[i]; {
		case s == 0:
			return i, false
		case s != idTomb && x.at(i).id() == id:
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
		return x.at(i)
	}
	return nil
}

// set makes e the entry of its id.
func (x *idIndex) set(e *entry) {
	if x.dir == nil {
		x.dir = newEntryDir()
	}
	if 8*(x.used+1) > 7*len(x.slots) {
		x.rehash(idSlotsFor(x.live + 1))
	}
	i, ok := x.find(e.id())
	if !ok {
		x.used++
		x.live++
	}
	x.slots[i] = 1 + x.dir.Ref(e)
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

// each calls fn with every entry.
func (x *idIndex) each(fn func(*entry)) {
	for i, s := range x.slots {
		if s != 0 && s != idTomb {
			fn(x.at(i))
		}
	}
}

// rehash makes the slots n long, dropping removed entries' marks.
func (x *idIndex) rehash(n int) {
	old := x.slots
	x.slots = make([]uint32, n)
	x.used = 0
	for _, s := range old {
		if s != 0 && s != idTomb {
			i, _ := x.find(x.dir.Deref(s - 1).id())
			x.slots[i] = s
			x.used++
		}
	}
}
