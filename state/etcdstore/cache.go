package etcdstore

import (
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/p2pstream/p2ptls/state"
)

// The read cache. Loading the state reads every record; one request per
// record would make 100k mappings take many seconds. So List of a
// directory that holds only files fetches their values too, at the
// revision it listed at, and Read serves them from memory while they are
// known to be current.
//
// They are known current because the store's one watch (watch.go) sees
// every change under the prefix and, before telling any feed, drops each
// cached value changed after the revision it was read at. A value the
// watch saw change after that revision, even before the List's answer
// arrived, is never cached (recent). Taking the lock empties the cache
// and refuses values read before the lock was taken, so a change under
// the lock reads what the previous holder wrote, not what the watch has
// delivered so far; this store's own commits drop what they change.
// Without the watch running (etcd away, before it starts) nothing is
// cached.
type cache struct {
	mu      sync.Mutex
	on      bool
	floor   int64 // values read before it are not cached
	values  map[string]cachedValue
	recent  map[string]int64 // key -> revision of its last change seen
	order   []string         // of recent, oldest first, to bound it
	subs    map[*state.Feed]struct{}
	latest  int64 // last revision the watch delivered
	entries int   // bytes cached
}

type cachedValue struct {
	value []byte
	rev   int64 // the revision it was read at
}

// Bounds of the cache: at most so many bytes of values, and so many keys
// remembered as recently changed (past that, floor rises instead).
const (
	cacheMaxBytes = 256 << 20
	recentMax     = 1 << 16
)

func newCache() cache {
	return cache{values: map[string]cachedValue{}, recent: map[string]int64{}, subs: map[*state.Feed]struct{}{}}
}

// restart turns the cache on from revision rev, empty; c.mu is held.
func (c *cache) restart(rev int64) {
	c.off()
	c.on, c.floor, c.latest = true, rev, rev
}

// off empties the cache and stops it; c.mu is held.
func (c *cache) off() {
	c.on = false
	clear(c.values)
	clear(c.recent)
	c.order, c.entries = nil, 0
}

// changed records that key changed at rev; c.mu is held.
func (c *cache) changed(key string, rev int64) {
	if v, ok := c.values[key]; ok && rev > v.rev {
		c.entries -= len(v.value)
		delete(c.values, key)
	}
	if _, ok := c.recent[key]; !ok {
		c.order = append(c.order, key)
	}
	c.recent[key] = rev
	for len(c.order) > recentMax {
		old := c.order[0]
		c.order = c.order[1:]
		if r := c.recent[old]; r > c.floor {
			c.floor = r // what changed before it can no longer be checked
		}
		delete(c.recent, old)
	}
}

// seen notes the last revision the watch delivered; c.mu is held.
func (c *cache) seen(rev int64) {
	if rev > c.latest {
		c.latest = rev
	}
}

// publish tells every feed; c.mu is held.
func (c *cache) publish(names []string, full bool) {
	for f := range c.subs {
		f.Publish(names, full)
	}
}

// put caches values read at rev, unless a change after rev was seen.
func (c *cache) put(kvs map[string][]byte, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || rev < c.floor {
		return
	}
	for k, v := range kvs {
		if c.recent[k] > rev || c.entries+len(v) > cacheMaxBytes {
			continue
		}
		if old, ok := c.values[k]; ok {
			c.entries -= len(old.value)
		}
		c.values[k] = cachedValue{value: v, rev: rev}
		c.entries += len(v)
	}
}

// missing counts the listed keys whose value is not cached as it is now.
func (c *cache) missing(kvs []*mvccpb.KeyValue) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, kv := range kvs {
		if v, ok := c.values[string(kv.Key)]; !ok || v.rev < kv.ModRevision {
			n++
		}
	}
	return n
}

// get returns key's cached value.
func (c *cache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.values[key]
	return v.value, ok
}

// caughtUp makes the cache as current as a read at rev: it waits up to
// within for the watch to have delivered rev (which drops every value
// changed by then), else empties the cache as taking the lock does. A
// claim taken at rev then decides from what the previous holder wrote,
// without refetching 100k records that did not change.
func (c *cache) caughtUp(rev int64, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		done := !c.on || c.latest >= rev // off: nothing is cached
		c.mu.Unlock()
		switch {
		case done:
			return
		case time.Now().After(deadline):
			c.lockTaken(rev)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// lockTaken empties the cache and refuses what was read before rev.
func (c *cache) lockTaken(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.values)
	c.entries = 0
	if rev > c.floor {
		c.floor = rev
	}
}

// committed drops what a commit of this store at rev changed: keys, and
// everything under each prefix.
func (c *cache) committed(rev int64, keys []string, prefixes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.changed(k, rev)
	}
	if len(prefixes) > 0 {
		// Deletes of directories are rare next to writes: drop all.
		clear(c.values)
		c.entries = 0
		if rev > c.floor {
			c.floor = rev
		}
	}
}
