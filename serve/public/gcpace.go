package public

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"github.com/p2pstream/p2ptls/serve/packedcert"
)

// The collector's pacing with certificates off the heap.
//
// Packed certificates live outside the Go heap (see packedcert): a
// collection no longer marks them, but the heap goal (by default twice the
// live heap) no longer counts them either, so at 100k mappings the heap
// would be collected about twice as often, and the collector's CPU per
// handshake would grow although each collection got cheaper (measured at
// 100k: 26 ms a cycle against 44 ms with the certificates on the heap).
// So the goal counts a share of the certificates' bytes: the collector's
// CPU per handshake is cycles per handshake (the allocation per handshake
// over the headroom, goal minus live) times a cycle's cost, both measured
// by BenchmarkHandshake and BenchmarkWarmHeapGC. Three quarters kept it
// below what it was with 208-byte entries, one object each (31 ms a
// cycle); with 128-byte entries in slabs a cycle cost about 21 ms and the
// headroom shrank to half the certificates' bytes. With entries that hold
// no pointer (72 bytes, never scanned) a cycle costs about 14.5 ms, so the
// headroom may shrink by that ratio again at the same CPU per handshake:
// a third of the certificates' bytes. Then the live heap lost 2.1 MiB at
// 100k that no cycle scanned (the SNI index's copies of the hosts): a
// cycle costs what it did (13 ms), but the headroom, which counts live
// bytes, shrank by as much, and cycles per handshake grew by a tenth
// (BenchmarkHandshake: 4.75-5.0 a thousand, 4.5 before). Three eighths of
// the certificates' bytes give the headroom back: 33.5 MiB at 100k (a live
// heap of 16.6 MiB and 45 MiB off it), the heap goal 50 MiB where it was
// 52.

// gcPercentMax bounds the GOGC serve sets: a heap of a few mappings and
// many certificates must not grow without limit.
const gcPercentMax = 400

// gcUserSet: the operator chose GOGC; serve then leaves the pacing alone.
var gcUserSet = os.Getenv("GOGC") != ""

// gcPercentFor is the GOGC that makes the heap goal live + live +
// 3*offHeap/8 for a live heap of live bytes: at least the default 100.
func gcPercentFor(live, offHeap uint64) int {
	if live == 0 {
		return 100
	}
	p := 100 + 100*(3*offHeap/8)/live
	return int(min(p, gcPercentMax))
}

// gcPacer sets GOGC as the certificates loaded off the heap change. Only
// the tick calls it, with the server's lock held.
type gcPacer struct{ set int }

// pace sets GOGC for the live heap and the certificates off it, when it
// moved by more than a tenth since it was last set.
func (g *gcPacer) pace() {
	if gcUserSet {
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	p := gcPercentFor(s[0].Value.Uint64(), uint64(packedcert.MappedBytes()))
	if g.set == 0 && p == 100 || g.set != 0 && 10*abs(p-g.set) <= g.set {
		return
	}
	debug.SetGCPercent(p)
	g.set = p
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// keepMemProfile leaves heap profiling as it is: a test run that writes a
// memory profile (go test -memprofile) sets it.
var keepMemProfile = false

// stopMemProfile turns heap profiling off. Serve has no profiling
// endpoint, so nobody reads the samples, yet the runtime keeps a bucket per
// sampled allocation's stack for the life of the process: about 1.7 MiB
// at 100k mappings, mostly from the load, which serve's resident memory
// should not carry. Start calls it before the load allocates.
func stopMemProfile() {
	if !keepMemProfile {
		runtime.MemProfileRate = 0
	}
}
