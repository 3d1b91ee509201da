package mappings

import (
	"context"
	"os"
	"reflect"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// A mapping without a usable certificate is served meanwhile by a wildcard
// mapping on the same listener that has one and covers each of its hosts;
// ServedBy names it in List and Show.
func TestServedBy(t *testing.T) {
	s, root := newStore(t)
	mustAdd(t, s, selfSignedIn("wild", "web", 0, "*.example.com"))
	mustAdd(t, s, selfSignedIn("wild-org", "web", 0, "*.example.org"))
	mustAdd(t, s, acmeIn("wild-pending", "dns-01", "cf", "*.example.net"))
	mustAdd(t, s, selfSignedIn("other-listener", "api", 0, "*.example.info"))

	mustAdd(t, s, acmeIn("dns", "dns-01", "cf", "dns.example.com"))                   // pending: served by wild
	mustAdd(t, s, acmeIn("two", "dns-01", "cf", "a.example.com", "b.example.org"))    // both parents covered
	mustAdd(t, s, acmeIn("half", "dns-01", "cf", "c.example.com", "c.elsewhere.com")) // one host uncovered
	mustAdd(t, s, acmeIn("deep", "dns-01", "cf", "a.b.example.com"))                  // a wildcard covers one label only
	mustAdd(t, s, acmeIn("apex", "dns-01", "cf", "example.com"))                      // nor the apex
	mustAdd(t, s, acmeIn("net", "dns-01", "cf", "x.example.net"))                     // the wildcard has no certificate either
	mustAdd(t, s, acmeIn("info", "dns-01", "cf", "x.example.info"))                   // wildcard on another listener
	mustAdd(t, s, selfSignedIn("has-own", "web", 0, "own.example.com"))               // has its own certificate
	mustAdd(t, s, selfSignedIn("lost", "web", 0, "lost.example.com"))                 // its certificate is gone: missing
	if err := os.Remove(storeFile(root, certName("lost"))); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dns": "wild", "two": "wild,wild-org", "lost": "wild",
		"half": "", "deep": "", "apex": "", "net": "", "info": "", "has-own": "", "wild": "", "wild-pending": "",
	}
	cfg := mustConfig(t, s)
	// Each describes a batch at a time, in parallel: the answer is the
	// same whether the wildcards and the mappings they serve fall in one
	// batch or in different ones.
	defer func(b int) { eachBatch = b }(eachBatch)
	for _, batch := range []int{eachBatch, 1, 3} {
		eachBatch = batch
		t.Logf("batches of %d", batch)
		infos, err := List(context.Background(), s, cfg, "", now0)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range infos {
			if w, ok := want[info.ID]; ok && info.ServedBy != w {
				t.Errorf("List: %s (%s) served_by %q, want %q", info.ID, info.Status, info.ServedBy, w)
			}
			show, _, err := Show(context.Background(), s, cfg, info.ID, now0)
			if err != nil || show.ServedBy != info.ServedBy {
				t.Errorf("Show(%s).ServedBy = %q, %v; List says %q", info.ID, show.ServedBy, err, info.ServedBy)
			}
		}
		// Filtered by listener: the same answer.
		infos, err = List(context.Background(), s, cfg, "web", now0)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range infos {
			if info.ServedBy != want[info.ID] {
				t.Errorf("List(web): %s served_by %q, want %q", info.ID, info.ServedBy, want[info.ID])
			}
		}
	}
}

// TestDescribeIsShow: Describe, which "mapping add" prints its mapping
// with, says what Show says, and loads the config only for a mapping
// without a certificate (ServedBy looks at the others then): adding to
// 100k mappings must not read every record a second time to print one.
func TestDescribeIsShow(t *testing.T) {
	s, _ := newStore(t)
	wild := mustAdd(t, s, selfSignedIn("wild", "web", 0, "*.example.com"))
	pending := mustAdd(t, s, acmeIn("dns", "dns-01", "cf", "dns.example.com"))
	cfg := mustConfig(t, s)
	tests := []struct {
		desc     string
		m        state.Mapping
		loads    int
		servedBy string
	}{
		{desc: "with a certificate", m: wild, loads: 0},
		{desc: "without one, served by a wildcard", m: pending, loads: 1, servedBy: "wild"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			loads := 0
			info, d, err := Describe(context.Background(), s, tc.m, now0, func() (*state.Config, error) {
				loads++
				return cfg, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			show, sd, err := Show(context.Background(), s, cfg, tc.m.ID, now0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(info, show) || !reflect.DeepEqual(d, sd) {
				t.Errorf("Describe:\n%+v %+v\nShow:\n%+v %+v", info, d, show, sd)
			}
			if loads != tc.loads || info.ServedBy != tc.servedBy {
				t.Errorf("%d loads, served_by %q; want %d, %q", loads, info.ServedBy, tc.loads, tc.servedBy)
			}
		})
	}
}
