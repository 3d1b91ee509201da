package public

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The collector's pacing with certificates off the heap.
//
// The collector's CPU per handshake is cycles per handshake (the
// allocation per handshake over the headroom, goal minus live) times a
// cycle's cost, both measured by BenchmarkHandshake and
// BenchmarkWarmHeapGC; serve's resident memory is, besides the binary and
// the packed certificates (off the heap, see packedcert), the heap at its
// goal. While a cycle was expensive (13-20 ms of CPU at 100k mappings,
// most of it marking the pointers to 100k entries) the goal counted three
// eighths of the certificates' bytes besides twice the live heap (GOGC
// about 200, a goal of 50 MiB at 100k), to keep cycles rare. Since
// nothing refers to the entries by pointer (see entryDir) a cycle at 100k
// costs about 0.7 ms where it cost 5.6-14 ms in the same run, so cycles
// may come several times as often for less CPU per handshake: the
// headroom is half the live heap (a goal of 26 MiB at 100k, where the
// memory goal leaves about 30).
//
// A cycle has a fixed cost besides: a serve with one mapping and 1 MiB
// live pays 1.2 ms of CPU per cycle, one with 10k mappings and 4 MiB
// live 1.8 ms, and a handshake allocates 36 KB or more. With the
// runtime's own goal of 4 MiB over the live heap that was a cycle every
// 70-160 handshakes, 8-25 µs of each (4-10 %; GODEBUG=gctrace=1 under
// hsbench). So the goal is also at least gcMinGoal, two thirds of what
// 100k mappings pace for: a small serve keeps 6-9 MiB more resident and
// collects three to four times less often (hsbench at 10k: 1.15 -> 1.06
// of the one-certificate server, RSS 42 -> 48 MiB; at 1: 0.98 -> 0.96).

// gcMinGoal is the least heap goal serve paces for.
const gcMinGoal = 16 << 20

// gcHeapMinimum is the runtime's least goal at GOGC=100; it scales with
// GOGC (see runtime.gcControllerState.heapMinimum).
const gcHeapMinimum = 4 << 20

// gcUserSet: the operator chose GOGC; serve then leaves the pacing alone.
var gcUserSet = os.Getenv("GOGC") != ""

// gcPercentFor is the GOGC that makes the heap goal over a live heap of
// live bytes half as much again, and at least gcMinGoal. The runtime's
// goal is the larger of live*(1+GOGC/100) and gcHeapMinimum*GOGC/100, so
// the least GOGC reaching gcMinGoal is the smaller of the two that do.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return 100
	}
	p := uint64(50)
	if live < gcMinGoal {
		p = max(p, min(ceilDiv(100*(gcMinGoal-live), live), ceilDiv(100*gcMinGoal, gcHeapMinimum)))
	}
	return int(p)
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// gcPacer sets GOGC as the live heap changes. Only the tick calls it,
// with the server's lock held.
type gcPacer struct{ set int }

// pace sets GOGC for the live heap, when it moved by more than a tenth
// since it was last set.
func (g *gcPacer) pace() {
	if gcUserSet {
		return
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	p := gcPercentFor(s[0].Value.Uint64())
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
