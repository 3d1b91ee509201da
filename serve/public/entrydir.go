package public

import (
	"fmt"
	"iter"
	"slices"
	"sync/atomic"
	"unsafe"
)

// entryDir numbers the slabs of entries that one generation of views
// refers to, so that what refers to every entry (each listener's host
// index, the by-id table) keeps a 32-bit reference, (slab number, place
// in the slab), where it kept a pointer: at 100k mappings 200k pointers,
// all into a few hundred slabs, were most of what a GC cycle marked (about
// 4 ms of CPU a cycle, against 0.1 ms for as many integers).
//
// A slab is numbered when an entry of it is first referred to and keeps
// its number for the generation's life, so a reference made once stays
// good in every later view of the generation: the host index's base,
// shared by the views an incremental reload makes, needs no rewrite. The
// directory keeps its slabs alive while any view refers to it (the
// collector marks a few hundred pointers, not 200k); a full reload makes a
// new generation, and so does renumber once changes left it mostly slabs
// whose entries are no longer served.
type entryDir struct {
	gen   uint32
	slabs atomic.Pointer[[]*slabHdr] // append-only; read by handshakes
	// built is how many slabs the directory had when its views were
	// built (see stale).
	built int
}

// maxSlabs bounds the slabs of a generation: a reference keeps the slab
// number in its upper 24 bits, and 1 + a reference must not be idTomb.
const maxSlabs = 1<<24 - 1

var dirGens atomic.Uint32

func newEntryDir() *entryDir {
	d := &entryDir{gen: dirGens.Add(1)}
	d.slabs.Store(new([]*slabHdr))
	return d
}

// Ref is e's reference, numbering its slab first if it has no number in
// this generation. Only the goroutine that builds views calls it.
func (d *entryDir) Ref(e *entry) uint32 {
	h := e.hdr()
	if h.gen != d.gen {
		s := *d.slabs.Load()
		if len(s) == maxSlabs {
			panic(fmt.Sprintf("entry directory full: %d slabs", len(s)))
		}
		s = append(s, h)
		h.gen, h.num = d.gen, uint32(len(s)-1)
		// Published before any view holding the reference is: a
		// handshake that found it finds its slab.
		d.slabs.Store(&s)
	}
	return h.num<<8 | uint32(e.at)
}

// Deref is the entry of reference r, which Ref returned.
func (d *entryDir) Deref(r uint32) *entry {
	h := (*d.slabs.Load())[r>>8]
	return (*entry)(unsafe.Add(unsafe.Pointer(h), slabEnts+uintptr(r&0xff)*unsafe.Sizeof(entry{})))
}

// len is the number of slabs numbered.
func (d *entryDir) len() int { return len(*d.slabs.Load()) }

// markBuilt notes that the views of the generation were built from
// scratch now.
func (d *entryDir) markBuilt() { d.built = d.len() }

// stale reports whether changes since the views were built numbered more
// slabs than there were then (and at least renumberMin): each change of a
// few mappings numbers a slab of its own, and the slab of the entry it
// replaced stays numbered, and so kept, until a new generation.
func (d *entryDir) stale() bool { return d.len()-d.built > max(renumberMin, d.built) }

// renumberMin is the least growth renumbered; a variable so that a test
// can make it happen often.
var renumberMin = 1024

// entryList is a view's entries, each by its reference in dir: as
// pointers they were 100k more at 100k mappings for every GC cycle to
// mark. An entry's slot is its index in the list.
type entryList struct {
	dir  *entryDir
	refs []uint32
}

// newEntryList is an empty list referring by dir, with room for n.
func newEntryList(dir *entryDir, n int) entryList {
	return entryList{dir: dir, refs: make([]uint32, 0, n)}
}

func (l entryList) len() int { return len(l.refs) }

// at is entry i.
func (l entryList) at(i int) *entry { return l.dir.Deref(l.refs[i]) }

// all yields every entry and its index.
func (l entryList) all() iter.Seq2[int, *entry] {
	return func(yield func(int, *entry) bool) {
		for i, r := range l.refs {
			if !yield(i, l.dir.Deref(r)) {
				return
			}
		}
	}
}

// add appends e, which takes its slot.
func (l *entryList) add(e *entry) {
	e.slot = int32(len(l.refs))
	l.refs = append(l.refs, l.dir.Ref(e))
}

// clone is a copy of l to change: l may be a view's, which handshakes
// read.
func (l entryList) clone() entryList { return entryList{dir: l.dir, refs: slices.Clone(l.refs)} }

// remove takes e out of l, moving the last entry into its slot.
func (l *entryList) remove(e *entry) {
	i := int(e.slot)
	if i >= l.len() || l.at(i) != e {
		// Not where it says: it is not in this list (a listener that did
		// not start), or the slot is stale.
		if i = l.index(e); i < 0 {
			return
		}
	}
	n := len(l.refs) - 1
	last := l.at(n)
	l.refs[i], last.slot = l.refs[n], int32(i)
	l.refs = l.refs[:n]
}

// index is e's index in l, -1 for none.
func (l entryList) index(e *entry) int {
	for i, x := range l.all() {
		if x == e {
			return i
		}
	}
	return -1
}
