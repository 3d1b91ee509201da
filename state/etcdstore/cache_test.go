package etcdstore

import (
	"testing"
	"time"
)

// TestCacheCaughtUp: a claim taken at a revision the watch has delivered
// keeps the cache; one the watch has not reached within the bound empties
// it and refuses values read before.
func TestCacheCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		latest  int64
		deliver int64 // delivered by the watch while caughtUp waits; 0: none
		keep    bool
	}{
		{name: "delivered", latest: 9, keep: true},
		{name: "delivered while waiting", latest: 5, deliver: 9, keep: true},
		{name: "watch lags", latest: 5, keep: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache()
			c.restart(1)
			c.put(map[string][]byte{"/p/v1/files/a": []byte("a")}, 3)
			c.latest = tc.latest
			if tc.deliver != 0 {
				go func() {
					time.Sleep(20 * time.Millisecond)
					c.mu.Lock()
					c.seen(tc.deliver)
					c.mu.Unlock()
				}()
			}
			within := 50 * time.Millisecond
			if tc.deliver != 0 {
				within = 10 * time.Second
			}
			c.caughtUp(9, within)
			if _, ok := c.get("/p/v1/files/a"); ok != tc.keep {
				t.Errorf("value kept %v, want %v", ok, tc.keep)
			}
			if !tc.keep && c.floor != 9 {
				t.Errorf("floor %d, want 9: values read before the claim refused", c.floor)
			}
		})
	}
}
