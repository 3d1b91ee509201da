//go:build unix

package packedcert

import (
	"fmt"
	"os"
	"syscall"
)

// mapChunk maps n bytes (rounded up to pages) of anonymous, private memory.
// Out of memory is fatal, as it is for the Go heap.
func mapChunk(n int) []byte {
	page := os.Getpagesize()
	n = (n + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(fmt.Sprintf("packedcert: map %d bytes for certificates: %v", n, err))
	}
	dontDump(mem)
	return mem
}

func unmapChunk(mem []byte) {
	if err := syscall.Munmap(mem); err != nil {
		panic(fmt.Sprintf("packedcert: unmap %d bytes of certificates: %v", len(mem), err))
	}
}
