package edge

import (
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

var openConns atomic.Int64

// OpenConns is how many connections the listeners made by Listen hold now.
func OpenConns() int64 { return openConns.Load() }

// countedConn counts itself in openConns until its first Close.
type countedConn struct {
	net.Conn
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { openConns.Add(-1) })
	return c.Conn.Close()
}

type countingListener struct{ net.Listener }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	openConns.Add(1)
	return &countedConn{Conn: c}, nil
}

// Trimmer returns memory to the operating system once a burst of
// connections is over. Go frees the heap of closed connections at its next
// collection, but an idle server allocates too little to trigger one for
// up to two minutes, and until then the heap goal set at the peak keeps the
// pages mapped: after 1,000 connections serve would hold 3x its usual RSS
// long after they closed. Observe is cheap and meant for a loop that runs
// every second or so; the collection it forces runs at most once per
// trimInterval and only after a burst, so a steady load never pays for it.
type Trimmer struct {
	peak    int64
	last    time.Time
	trimmed int
	free    func() // debug.FreeOSMemory; a test replaces it
}

const (
	// trimMinPeak is the smallest burst worth a forced collection: a
	// collection at a small heap costs about a millisecond, and one every
	// trimInterval at most is nothing next to what handshakes cost.
	trimMinPeak = 128
	// trimInterval bounds how often a collection is forced.
	trimInterval = 10 * time.Second
)

// Observe takes the number of open connections now and forces a collection
// when they fell to a quarter of a burst's peak. It reports whether it did.
func (t *Trimmer) Observe(open int64, now time.Time) bool {
	t.peak = max(t.peak, open)
	if t.peak < trimMinPeak || open > t.peak/4 || now.Sub(t.last) < trimInterval {
		return false
	}
	free := t.free
	if free == nil {
		free = debug.FreeOSMemory
	}
	free()
	t.peak, t.last = open, now
	t.trimmed++
	return true
}
