package sni

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/state/hostname"
)

const (
	// MaxNames bounds the distinct server names a FallbackCounter keeps:
	// attackers choose SNI values, so the table must not grow with them.
	MaxNames = 1024
	// OtherName is where names beyond MaxNames are counted.
	OtherName = "(other)"

	// maxName is the longest DNS name (RFC 1035); longer server names are
	// truncated so the tables hold no large attacker-chosen strings.
	maxName = 253

	logPerName = time.Minute // at most one line per name in this time
	logBurst   = 10          // and at most this many lines
	logWindow  = time.Second // in this time, overall
)

// key is the form a server name is counted and rate-limited under: the
// normalised name (the empty string for no SNI), at most maxName bytes.
func key(serverName string) string {
	// Cutting first bounds NormalizeSNI's work on huge names; one byte more
	// than maxName keeps the result the same when a trailing dot is dropped.
	if len(serverName) > maxName+1 {
		serverName = serverName[:maxName+1]
	}
	s := hostname.NormalizeSNI(serverName)
	if len(s) > maxName {
		s = s[:maxName]
	}
	return s
}

// FallbackCounter counts fallback handshakes per server name. It is safe for
// concurrent use; a name seen before costs one lock-free map load and one
// atomic add. The zero value is ready to use.
type FallbackCounter struct {
	names sync.Map     // key -> *atomic.Int64
	n     atomic.Int64 // entries in names; written under mu only
	other atomic.Int64 // names beyond MaxNames
	mu    sync.Mutex   // serialises adding names, so the bound is exact
}

// NewFallbackCounter returns an empty FallbackCounter.
func NewFallbackCounter() *FallbackCounter { return new(FallbackCounter) }

// Record counts one fallback handshake for serverName ("" for no SNI) and
// reports whether this call added the name to the table. Once MaxNames names
// are kept, new ones are counted under OtherName.
func (c *FallbackCounter) Record(serverName string) (first bool) {
	name := key(serverName)
	if name == OtherName { // a client may send it literally; keep one entry
		c.other.Add(1)
		return false
	}
	if v, ok := c.names.Load(name); ok {
		v.(*atomic.Int64).Add(1)
		return false
	}
	// A full table takes new names without the lock: a flood of random
	// names must not serialise handshakes.
	if c.n.Load() >= MaxNames {
		c.other.Add(1)
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.names.Load(name); ok { // added while we waited
		v.(*atomic.Int64).Add(1)
		return false
	}
	if c.n.Load() >= MaxNames {
		c.other.Add(1)
		return false
	}
	v := new(atomic.Int64)
	v.Store(1)
	// Clone: name may be a slice of a larger string the table would pin.
	c.names.Store(strings.Clone(name), v)
	c.n.Add(1)
	return true
}

// Snapshot returns the counts by name; OtherName appears once names were
// counted there.
func (c *FallbackCounter) Snapshot() map[string]int64 {
	m := make(map[string]int64, c.n.Load()+1)
	c.names.Range(func(k, v any) bool {
		m[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	if o := c.other.Load(); o > 0 {
		m[OtherName] = o
	}
	return m
}

// Total returns the number of fallback handshakes counted. It sums the
// table rather than keeping a shared counter every Record would contend on.
func (c *FallbackCounter) Total() int64 {
	t := c.other.Load()
	c.names.Range(func(_, v any) bool {
		t += v.(*atomic.Int64).Load()
		return true
	})
	return t
}

// LogLimiter rate-limits the fallback log lines: at most one per server name
// per minute and at most 10 per second overall. It is safe for concurrent
// use. The lock is fine here: it guards a few comparisons on a path that just
// paid for a full handshake.
type LogLimiter struct {
	mu         sync.Mutex
	last       map[string]time.Time // when each name was last logged
	swept      time.Time            // when last was last pruned
	recent     [logBurst]time.Time  // times of the latest lines, a ring
	oldest     int                  // index of the oldest time in recent
	suppressed int                  // lines refused since the last one allowed
}

// NewLogLimiter returns a LogLimiter that has logged nothing yet.
func NewLogLimiter() *LogLimiter { return &LogLimiter{last: map[string]time.Time{}} }

// ShouldLog reports whether a fallback for serverName should be logged at
// now, and if so how many lines were suppressed since the previous one, for
// the line to say "(N more suppressed)".
func (l *LogLimiter) ShouldLog(serverName string, now time.Time) (ok bool, suppressed int) {
	name := key(serverName)
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, seen := l.last[name]; seen && now.Sub(t) < logPerName || now.Sub(l.recent[l.oldest]) < logWindow {
		l.suppressed++
		return false, 0
	}
	// Prune once per minute: at most logBurst lines per second get here, so
	// the map stays below two minutes' worth of lines whatever names arrive.
	if now.Sub(l.swept) >= logPerName {
		for k, t := range l.last {
			if now.Sub(t) >= logPerName {
				delete(l.last, k)
			}
		}
		l.swept = now
	}
	// Clone even for a known name: assigning replaces a map's string key.
	l.last[strings.Clone(name)] = now
	l.recent[l.oldest] = now
	l.oldest = (l.oldest + 1) % logBurst
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
