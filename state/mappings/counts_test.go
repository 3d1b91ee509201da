package mappings

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// TestCount: the counts of every listener and of one are what counting
// List's answer gives, with every status present (an expiring mapping
// added to pageState's), listeners in config order and one without
// mappings counted as zero.
func TestCount(t *testing.T) {
	defer func(b int) { eachBatch = b }(eachBatch)
	eachBatch = 16 // cross batches
	s, _ := pageState(t, 120)
	ctx := context.Background()
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "idle", Addr: ":7443"}); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, selfSignedIn("soon", "api", 0, "soon.example.net"))
	if err := s.Write(ctx, certName("soon"), issue(t, now0.Add(-80*day), 90*day, "soon.example.net").CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, s)
	list, err := List(ctx, s, cfg, "", now0)
	if err != nil {
		t.Fatal(err)
	}
	// want counts list by hand, keyed by listener ("" for all).
	want := map[string]map[string]int{"": {}}
	for _, l := range cfg.Listeners {
		want[l.Name] = map[string]int{}
	}
	for _, info := range list {
		for _, k := range []string{"", info.Listener} {
			want[k][info.Status]++
			want[k]["total"]++
		}
	}
	for _, st := range Statuses {
		if want[""][st] == 0 {
			t.Fatalf("the state has no %s mapping", st)
		}
	}
	check := func(what string, total int, sc StatusCounts, w map[string]int) {
		t.Helper()
		b, _ := json.Marshal(sc)
		var got map[string]int
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(Statuses) {
			t.Errorf("%s: status counts %s do not have the %d statuses", what, b, len(Statuses))
		}
		for _, st := range Statuses {
			if g, ok := got[st]; !ok || g != w[st] {
				t.Errorf("%s: %s = %d (present %v), List has %d", what, st, g, ok, w[st])
			}
		}
		if total != w["total"] {
			t.Errorf("%s: total %d, List has %d", what, total, w["total"])
		}
	}
	for _, listener := range []string{"", "web", "api", "idle"} {
		t.Run(fmt.Sprintf("listener=%q", listener), func(t *testing.T) {
			c, err := Count(ctx, s, cfg, listener, now0)
			if err != nil {
				t.Fatal(err)
			}
			check("all", c.Total, c.Status, want[listener])
			var names []string
			for _, l := range c.Listeners {
				names = append(names, l.Name)
				check(l.Name, l.Total, l.Status, want[l.Name])
			}
			wantNames := fmt.Sprint([]string{"web", "api", "idle"})
			if listener != "" {
				wantNames = fmt.Sprint([]string{listener})
			}
			if fmt.Sprint(names) != wantNames {
				t.Errorf("listeners %v, want %v", names, wantNames)
			}
		})
	}
	empty := &state.Config{SchemaVersion: state.SchemaVersion}
	if c, err := Count(ctx, s, empty, "", now0); err != nil || c.Listeners == nil || c.Total != 0 {
		t.Errorf("Count of a state without listeners = %+v, %v; want no mappings and an empty (not nil) list of listeners", c, err)
	}
	if _, err := Count(ctx, s, cfg, "nope", now0); fault.KindOf(err) != fault.NotFound {
		t.Errorf("Count of an unknown listener: %v, want a not-found error", err)
	}
}

// BenchmarkCount is Count over 10k and 100k mappings of a loaded config
// (what GET /api/v1/mapping-counts adds to state.LoadConfig): every
// certificate looked at through the memo, no Info kept.
func BenchmarkCount(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ids := make([]string, n)
			for k := range ids {
				ids[k] = fmt.Sprintf("m%06d", k)
			}
			s, cfg := benchState(b, ids)
			for b.Loop() {
				c, err := Count(context.Background(), s, cfg, "", now0)
				if err != nil || c.Total != n || c.Status.Valid != n {
					b.Fatalf("Count: %+v, %v", c.Status, err)
				}
			}
		})
	}
}
