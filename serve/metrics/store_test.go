package metrics

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	storesnap "github.com/p2pstream/p2ptls/state/snapshot"
)

type fakeHealth struct {
	mu sync.Mutex
	h  storesnap.Health
}

func (f *fakeHealth) Health() storesnap.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.h
}

func TestStoreMetrics(t *testing.T) {
	store := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	m := New(Options{Store: store, Log: discard, Public: &fakeServed{listener: "web"}})
	m.Refresh(context.Background())
	synced := time.Now().Add(-time.Hour)
	f := &fakeHealth{}
	m.WatchStore(f)
	cases := []struct {
		desc      string
		h         storesnap.Health
		connected float64
		minAge    float64
		maxAge    float64
	}{
		{"connected and current", storesnap.Health{Connected: true, Current: true, SnapshotAt: synced}, 1, 0, 0},
		{"connected, copy behind", storesnap.Health{Connected: true, SnapshotAt: synced, Error: "does not load"}, 1, 3600, 3700},
		{"unreachable", storesnap.Health{SnapshotAt: synced, Error: "unreachable"}, 0, 3600, 3700},
		{"unreachable, no snapshot yet", storesnap.Health{Error: "unreachable"}, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			f.mu.Lock()
			f.h = tc.h
			f.mu.Unlock()
			fams := scrape(t, m.Handler())
			if got := series(fams, "p2ptls_store_connected")[""]; got != tc.connected {
				t.Errorf("p2ptls_store_connected = %v, want %v", got, tc.connected)
			}
			age, ok := series(fams, "p2ptls_store_snapshot_age_seconds")[""]
			if !ok || age < tc.minAge || age > tc.maxAge {
				t.Errorf("p2ptls_store_snapshot_age_seconds = %v (present %v), want %v..%v", age, ok, tc.minAge, tc.maxAge)
			}
		})
	}
}
