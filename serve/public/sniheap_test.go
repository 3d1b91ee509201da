package public

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/p2pstream/p2ptls/state"
)

// A listener's SNI index keeps no copy of the hosts: its keys are views of
// the entries' own strings. With copies each host's bytes were on the live
// heap twice (2.3 MiB at 100k mappings); long hosts make the difference
// plain against what an entry and its index slots cost.
func TestListenerIndexKeepsNoCopyOfHosts(t *testing.T) {
	const n = 4000
	pad := strings.Repeat("x", 200)
	ms := make([]state.Mapping, n)
	for i := range ms {
		host := fmt.Sprintf("%s%05d.example.com", pad, i)
		if i%4 == 3 {
			host = "*." + host
		}
		ms[i] = state.Mapping{ID: fmt.Sprintf("m%05d", i), Listener: "web", Source: state.SourceManual, Hosts: []string{host}}
	}
	hostLen := len(ms[0].Hosts[0])
	s := New(Options{Log: discardLog})
	runtime.GC()
	before := heapStats().live
	v, err := s.buildView(context.Background(), state.Listener{Name: "web"}, ms, n, nil, &strArena{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	after := heapStats().live
	runtime.KeepAlive(v)
	runtime.KeepAlive(ms)
	// An entry (72 bytes), its strings (the host and id once), its slots
	// and slice places: under 2 hosts' bytes; a copy of the host is a third.
	if per := float64(after-before) / n; per > float64(2*hostLen) {
		t.Errorf("a view adds %.0f bytes of live heap per mapping of one %d-byte host; want at most %d (no copy of the host)", per, hostLen, 2*hostLen)
	} else {
		t.Logf("%.0f bytes per mapping of one %d-byte host", per, hostLen)
	}
	for i := 0; i < n; i += 997 {
		name := strings.TrimPrefix(ms[i].Hosts[0], "*.")
		if i%4 == 3 {
			name = "a." + name
		}
		if e, ok := v.index.Lookup(name); !ok || e.id() != ms[i].ID {
			t.Errorf("Lookup(%q) = %v, %v; want mapping %s", name, e, ok, ms[i].ID)
		}
	}
}

// What refers to every entry holds no pointer: the host index, the view's
// list and the by-id table keep references (see entryDir), so a view and
// the table add to the scannable heap only the slabs. With pointers the
// list and the index's values were 8 bytes each a mapping of one host,
// the table's slots about 13 more. (The
// runtime counts a slab whole as scannable, though the collector reads
// only its header, since its entries hold no pointer: its size is taken
// off.)
func TestViewAndByIDHoldNoPointers(t *testing.T) {
	const n = 20000
	ms := make([]state.Mapping, n)
	host := func(i int) string {
		if i%2 == 1 {
			return fmt.Sprintf("*.w%05d.example.net", i)
		}
		return fmt.Sprintf("h%05d.example.com", i)
	}
	for i := range ms {
		ms[i] = state.Mapping{ID: fmt.Sprintf("m%05d", i), Listener: "web", Source: state.SourceManual, Hosts: []string{host(i)}}
	}
	s := New(Options{Log: discardLog})
	var strs strArena
	runtime.GC()
	before := heapStats().scan
	v, err := s.buildView(context.Background(), state.Listener{Name: "web"}, ms, n, nil, &strs)
	if err != nil {
		t.Fatal(err)
	}
	var x idIndex
	x.reset(n, strs.refs())
	for _, e := range v.entries.all() {
		x.set(e)
	}
	runtime.GC()
	after := heapStats().scan - int64(strs.dir.len())*int64(unsafe.Sizeof(slab{}))
	if per := float64(after-before) / n; per > 2 {
		t.Errorf("a view of %d mappings and its by-id table add %.1f scannable bytes per mapping; want at most 2", n, per)
	}
	for i := 0; i < n; i += 999 {
		name := strings.Replace(host(i), "*", "a", 1)
		if e, ok := v.index.Lookup(name); !ok || e.id() != ms[i].ID {
			t.Errorf("Lookup(%q) = %v, %v; want mapping %s", name, e, ok, ms[i].ID)
		}
		if e := x.get(ms[i].ID); e == nil || e.id() != ms[i].ID {
			t.Errorf("by id %s: %v", ms[i].ID, e)
		}
	}
	runtime.KeepAlive(v)
	runtime.KeepAlive(&x)
	runtime.KeepAlive(ms)
}
