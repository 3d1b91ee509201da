package public

import (
	"runtime"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// The goal is half as much again as the live heap and at least gcMinGoal,
// with the least GOGC that gives it.
func TestGCPercentFor(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		live uint64
		want int
	}{
		{0, 100},
		{17 * MiB, 50}, // 100k mappings: a goal of 25.5 MiB
		{200 * MiB, 50},
		{14 * MiB, 50},
		{10 * MiB, 60},
		{4 * MiB, 300}, // 10k mappings: 4 MiB and a headroom of 12
		{1 * MiB, 400}, // the runtime's minimum at GOGC=400 is 16 MiB
	}
	for _, tt := range tests {
		if got := gcPercentFor(tt.live); got != tt.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tt.live/MiB, got, tt.want)
		}
	}
	// The runtime's goal for GOGC p (see gcHeapMinimum).
	goal := func(live uint64, p int) uint64 {
		return max(live+live*uint64(p)/100, gcHeapMinimum*uint64(p)/100)
	}
	for live := uint64(64 << 10); live < 64*MiB; live += live/7 + 1 {
		p := gcPercentFor(live)
		want := max(live+live/2, gcMinGoal)
		if g := goal(live, p); g < want {
			t.Errorf("live %d: GOGC %d makes a goal of %d, want at least %d", live, p, g, want)
		}
		if p > 50 && goal(live, p-1) >= want {
			t.Errorf("live %d: GOGC %d is more than the %d that makes the goal", live, p, p-1)
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
