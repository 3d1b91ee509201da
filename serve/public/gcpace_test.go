package public

import (
	"runtime"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// The heap goal counts three eighths of the certificates off the heap,
// and GOGC stays within [100, gcPercentMax].
func TestGCPercentFor(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		live, offHeap uint64
		want          int
	}{
		{0, 0, 100},
		{0, 46 * MiB, 100},
		{35 * MiB, 0, 100},
		{17 * MiB, 45 * MiB, 199}, // 100k mappings: goal 17+17+16.9 MiB
		{5 * MiB, 6 * MiB, 145},
		{1 * MiB, 100 * MiB, gcPercentMax},
	}
	for _, tt := range tests {
		if got := gcPercentFor(tt.live, tt.offHeap); got != tt.want {
			t.Errorf("gcPercentFor(%d MiB, %d MiB) = %d, want %d", tt.live/MiB, tt.offHeap/MiB, got, tt.want)
		}
	}
}

// Start turns heap profiling off: nobody reads the samples, and their
// buckets stay resident.
func TestStartStopsHeapProfiling(t *testing.T) {
	if keepMemProfile {
		t.Skip("this run writes a memory profile")
	}
	rate := runtime.MemProfileRate
	t.Cleanup(func() { runtime.MemProfileRate = rate })
	runtime.MemProfileRate = 512 << 10
	newFixture(t, []state.Mapping{{ID: "a", Hosts: []string{"a.example.com"}, Upstream: upstream(t, "a")}}, nil, Options{})
	if runtime.MemProfileRate != 0 {
		t.Errorf("after Start, runtime.MemProfileRate = %d, want 0", runtime.MemProfileRate)
	}
}
