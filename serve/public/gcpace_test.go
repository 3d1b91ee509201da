package public

import (
	"runtime"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// The headroom is half the live heap and at least gcMinHeadroom, and GOGC
// at most gcPercentMax.
func TestGCPercentFor(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		live uint64
		want int
	}{
		{0, 100},
		{17 * MiB, 50}, // 100k mappings: a goal of 25.5 MiB
		{200 * MiB, 50},
		{8 * MiB, 50},
		{5 * MiB, 80}, // 4 MiB over 5
		{4 * MiB, 100},
		{1 * MiB, gcPercentMax},
	}
	for _, tt := range tests {
		if got := gcPercentFor(tt.live); got != tt.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tt.live/MiB, got, tt.want)
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
