package packedcert

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Packed certificates live outside the Go heap, in chunks of anonymous
// memory (see mapChunk): at 100k mappings they are about 46 MB, and on
// the heap the collector's heap goal doubled that in RSS. Off the heap
// they cost their bytes once.
//
// A chunk is returned to the operating system only when the garbage
// collector has proven that nothing refers to it any more: every Cert
// packed in it and every tls.Certificate rebuilt from it (see rebuilt)
// holds a pointer to its chunk. A handshake that still holds a rebuilt
// certificate after its entry was replaced by a reload keeps the chunk
// mapped, so its chain and key can never be read after they are freed.
// The price is that a chunk stays while any of its certificates is in
// use: at worst, while every certificate is replaced once (a renewal of
// all of them), about twice the bytes.

// chunkSize is the size of a chunk: a few hundred P-256 pairs, few
// enough that one pair still in use keeps little else mapped.
const chunkSize = 128 << 10

// chunk is one region of memory that packed certificates are copied into.
type chunk struct {
	mem []byte // from mapChunk; never moved, freed by unmapChunk only
}

var (
	// arena is where the next certificate is packed: the current chunk
	// and how much of it is used. It is the only reference to a chunk
	// that is not a Cert's or a rebuilt certificate's.
	arena struct {
		sync.Mutex
		cur  *chunk
		used int
	}
	// mapped is the number of bytes of chunks mapped now.
	mapped atomic.Int64
)

// place returns a chunk and the offset of n bytes in it that are free, for
// a certificate to be packed into. A certificate larger than a chunk gets
// a chunk of its own.
func place(n int) (*chunk, int) {
	arena.Lock()
	defer arena.Unlock()
	if n > chunkSize {
		return newChunk(n), 0
	}
	if arena.cur == nil || chunkSize-arena.used < n {
		arena.cur, arena.used = newChunk(chunkSize), 0
	}
	off := arena.used
	arena.used += n
	return arena.cur, off
}

// newChunk maps a chunk of at least n bytes, freed once it is unreachable.
func newChunk(n int) *chunk {
	mem := mapChunk(n)
	c := &chunk{mem: mem}
	mapped.Add(int64(len(mem)))
	// The cleanup gets the memory, not the chunk: it runs only after the
	// chunk is unreachable, and nothing can reach mem without it.
	runtime.AddCleanup(c, func(mem []byte) {
		unmapChunk(mem)
		mapped.Add(-int64(len(mem)))
	}, mem)
	return c
}

// MappedBytes is the memory held by packed certificates outside the Go
// heap now, for serve's figures: chunks still in use by any Cert or
// rebuilt certificate, including their unused ends.
func MappedBytes() int64 { return mapped.Load() }
