package sni

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFallbackCounterNormalises(t *testing.T) {
	c := NewFallbackCounter()
	long := strings.Repeat("a", 300) + ".example.com"
	recs := []struct {
		sni   string
		first bool
	}{
		{"a.example.com", true},
		{"A.Example.COM.", false},
		{"", true},
		{"", false},
		{long, true},
		{strings.ToUpper(long), false}, // same once truncated
		{OtherName, false},             // literal, joins the overflow entry
	}
	for _, r := range recs {
		if first := c.Record(r.sni); first != r.first {
			t.Errorf("Record(%.20q) first = %v, want %v", r.sni, first, r.first)
		}
	}
	want := map[string]int64{"a.example.com": 2, "": 2, long[:maxName]: 2, OtherName: 1}
	if got := c.Snapshot(); !maps.Equal(got, want) {
		t.Errorf("Snapshot = %v, want %v", got, want)
	}
	if got := c.Total(); got != 7 {
		t.Errorf("Total = %d, want 7", got)
	}
}

func TestFallbackCounterZeroValue(t *testing.T) {
	var c FallbackCounter
	if c.Total() != 0 || len(c.Snapshot()) != 0 {
		t.Fatal("zero value not empty")
	}
	c.Record("x.example.com")
	if c.Total() != 1 {
		t.Fatal("zero value does not count")
	}
}

func TestFallbackCounterBound(t *testing.T) {
	c := NewFallbackCounter()
	for i := range MaxNames + 10 {
		first := c.Record(fmt.Sprintf("n%d.example.com", i))
		if first != (i < MaxNames) {
			t.Fatalf("name %d: first = %v", i, first)
		}
	}
	c.Record("n0.example.com") // a kept name still counts under itself
	c.Record(fmt.Sprintf("n%d.example.com", MaxNames))
	s := c.Snapshot()
	if len(s) != MaxNames+1 {
		t.Errorf("%d names kept, want %d plus %q", len(s), MaxNames, OtherName)
	}
	if s["n0.example.com"] != 2 || s[OtherName] != 11 {
		t.Errorf("n0 = %d, other = %d; want 2, 11", s["n0.example.com"], s[OtherName])
	}
	if _, ok := s[fmt.Sprintf("n%d.example.com", MaxNames)]; ok {
		t.Error("a name beyond MaxNames was kept")
	}
	if got := c.Total(); got != MaxNames+12 {
		t.Errorf("Total = %d, want %d", got, MaxNames+12)
	}
}

func TestFallbackCounterConcurrent(t *testing.T) {
	c := NewFallbackCounter()
	const goroutines, each = 8, 2000
	var firsts sync.Map
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				// Overlapping names across goroutines, more than MaxNames in all.
				name := fmt.Sprintf("n%d.example.com", (i*7+g*13)%(2*MaxNames))
				if c.Record(name) {
					if _, dup := firsts.LoadOrStore(name, true); dup {
						t.Errorf("%s reported first twice", name)
					}
				}
				if i%500 == 0 {
					c.Snapshot()
					c.Total()
				}
			}
		})
	}
	wg.Wait()
	s := c.Snapshot()
	if len(s) != MaxNames+1 {
		t.Errorf("%d entries, want %d", len(s), MaxNames+1)
	}
	var sum int64
	for _, v := range s {
		sum += v
	}
	if sum != goroutines*each || c.Total() != goroutines*each {
		t.Errorf("sum %d, Total %d; want %d", sum, c.Total(), goroutines*each)
	}
	var nFirst int
	firsts.Range(func(any, any) bool { nFirst++; return true })
	if nFirst != MaxNames {
		t.Errorf("%d names reported first, want %d", nFirst, MaxNames)
	}
}

func TestLogLimiter(t *testing.T) {
	l := NewLogLimiter()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at         time.Duration
		sni        string
		ok         bool
		suppressed int
	}
	steps := []step{
		{0, "a.example.com", true, 0},
		{time.Millisecond, "a.example.com", false, 0},
		{2 * time.Millisecond, "A.EXAMPLE.COM.", false, 0}, // same name
		{30 * time.Second, "a.example.com", false, 0},
		{30 * time.Second, "", true, 3}, // no SNI is a name of its own
		{30 * time.Second, "", false, 0},
		{time.Minute - 1, "a.example.com", false, 0},
		{time.Minute, "a.example.com", true, 2},
	}
	for i, s := range steps {
		ok, n := l.ShouldLog(s.sni, t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("step %d (%v %q): got %v, %d; want %v, %d", i, s.at, s.sni, ok, n, s.ok, s.suppressed)
		}
	}
}

func TestLogLimiterOverall(t *testing.T) {
	l := NewLogLimiter()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	name := func(i int) string { return fmt.Sprintf("n%d.example.com", i) }
	// 25 distinct names within one second: only the first 10 are logged.
	for i := range 25 {
		ok, _ := l.ShouldLog(name(i), t0.Add(time.Duration(i)*10*time.Millisecond))
		if ok != (i < logBurst) {
			t.Errorf("name %d: ok = %v", i, ok)
		}
	}
	// The window slides: a second after the first line, one more fits.
	if ok, n := l.ShouldLog(name(10), t0.Add(time.Second)); !ok || n != 15 {
		t.Errorf("after 1s: got %v, %d; want true, 15", ok, n)
	}
	if ok, _ := l.ShouldLog(name(11), t0.Add(time.Second)); ok {
		t.Error("second line at 1s allowed; the 2nd line of the window is 990ms old")
	}
	if ok, _ := l.ShouldLog(name(11), t0.Add(time.Second+10*time.Millisecond)); !ok {
		t.Error("line at 1.01s refused")
	}
	// A name refused by the overall limit was not marked as logged.
	if ok, _ := l.ShouldLog(name(12), t0.Add(2*time.Second)); !ok {
		t.Error("name refused only by the overall limit stays refused")
	}
}

func TestLogLimiterBoundedUnderFlood(t *testing.T) {
	l := NewLogLimiter()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	logged := 0
	// Ten minutes of a new random name every millisecond.
	for i := range 600_000 {
		if ok, _ := l.ShouldLog(fmt.Sprintf("r%d.example.com", i), t0.Add(time.Duration(i)*time.Millisecond)); ok {
			logged++
		}
		if len(l.last) > 2*int(logPerName/logWindow)*logBurst {
			t.Fatalf("after %d names the limiter holds %d", i, len(l.last))
		}
	}
	if logged != 6000 {
		t.Errorf("logged %d lines in 600 s, want 6000", logged)
	}
}

func TestLogLimiterConcurrent(t *testing.T) {
	l := NewLogLimiter()
	t0 := time.Now()
	var (
		mu     sync.Mutex
		logged int
		sup    int
		wg     sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				ok, n := l.ShouldLog(fmt.Sprintf("n%d.example.com", g*500+i), t0)
				mu.Lock()
				if ok {
					logged++
				}
				sup += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if logged != logBurst {
		t.Errorf("logged %d at one instant, want %d", logged, logBurst)
	}
	// Every refused call is reported by the next allowed line.
	if ok, n := l.ShouldLog("late.example.com", t0.Add(time.Second)); !ok || sup+n != 4000-logBurst {
		t.Errorf("suppressed total %d (ok %v), want %d", sup+n, ok, 4000-logBurst)
	}
}
