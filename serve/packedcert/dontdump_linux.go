package packedcert

import "golang.org/x/sys/unix"

// dontDump keeps the chunk, which holds private keys, out of core dumps.
// It is a precaution, so a kernel that refuses it is no error.
func dontDump(mem []byte) { _ = unix.Madvise(mem, unix.MADV_DONTDUMP) }
