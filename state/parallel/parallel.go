// Package parallel spreads independent work over every core: reading
// 100k mapping records, describing them, checking them.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Each calls fn(i) for every i below n, one worker per core, handing the
// indexes out in order. Once fn returns false no further index is handed
// out (those in flight finish), so every index below the first one that
// stopped the work has been done. fn of different i must not share what
// they write.
func Each(n int, fn func(i int) bool) {
	var next atomic.Int64
	var stopped atomic.Bool
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for !stopped.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if !fn(i) {
					stopped.Store(true)
				}
			}
		})
	}
	wg.Wait()
}
