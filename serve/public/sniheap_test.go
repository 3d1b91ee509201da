package public

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

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
