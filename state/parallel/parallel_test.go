package parallel

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestEach(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000} {
		seen := make([]atomic.Int32, n)
		Each(n, func(i int) bool { seen[i].Add(1); return true })
		for i := range seen {
			if got := seen[i].Load(); got != 1 {
				t.Fatalf("n=%d: index %d done %d times, want once", n, i, got)
			}
		}
	}
}

// TestEachStops: after fn returns false no new index starts, and every
// index below the one that stopped has been done.
func TestEachStops(t *testing.T) {
	const n, stop = 10000, 100
	seen := make([]atomic.Bool, n)
	var done atomic.Int32
	Each(n, func(i int) bool {
		seen[i].Store(true)
		done.Add(1)
		if i > stop {
			// Slow past the stop, so that the work could not finish
			// before the stop is seen, however the workers are scheduled.
			time.Sleep(time.Millisecond)
		}
		return i != stop
	})
	for i := range stop + 1 {
		if !seen[i].Load() {
			t.Fatalf("index %d below the stop was not done", i)
		}
	}
	if d := done.Load(); d == n {
		t.Errorf("all %d indexes done, want the work to stop after index %d", d, stop)
	}
}
