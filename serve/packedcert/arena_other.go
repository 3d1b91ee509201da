//go:build !unix

package packedcert

// Without mmap, chunks are Go memory: the same lifetimes, on the heap.
func mapChunk(n int) []byte { return make([]byte, n) }

func unmapChunk([]byte) {}
