package edge

import (
	"testing"
	"time"
)

// A forced collection follows the end of a burst, at most once per
// interval, and never a steady or small load.
func TestTrimmerAfterBursts(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		at   time.Duration
		open int64
		want bool
	}{
		{0, 100, false},                // small
		{time.Second, 10, false},       // a small burst ends: not worth it
		{2 * time.Second, 1000, false}, // a burst
		{3 * time.Second, 600, false},  // still going
		{4 * time.Second, 200, true},   // down to a fifth of its peak
		{5 * time.Second, 0, false},    // the peak was reset to 200
		{6 * time.Second, 1000, false}, // another burst
		{7 * time.Second, 10, false},   // over, but within the interval
		{15 * time.Second, 10, true},   // the interval passed
		{30 * time.Second, 900, false}, // a steady high load
		{60 * time.Second, 900, false},
	}
	calls := 0
	tr := &Trimmer{free: func() { calls++ }}
	for _, s := range steps {
		if got := tr.Observe(s.open, t0.Add(s.at)); got != s.want {
			t.Errorf("at %v with %d open: trimmed %v, want %v", s.at, s.open, got, s.want)
		}
	}
	if calls != 2 || tr.trimmed != 2 {
		t.Errorf("freed %d times, want 2", calls)
	}
}
