package runstatus

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// TestServeBackoff: status shows serve's count only when that serve runs
// and counted it; one left by an earlier serve, or none yet, is null. The
// pid stays in the file, out of the JSON's shape.
func TestServeBackoff(t *testing.T) {
	ctx := context.Background()
	s := state.OpenDir(filepath.Join(t.TempDir(), "state"), 2*time.Second)
	if err := os.MkdirAll(filepath.Join(s.Root(), state.RunDir), 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
	counted := Backoff{Backoff: mappings.Backoff{RateLimited: 2, Failed: 1, EarliestRetryAt: &at}, CountedAt: at}
	running := &Status{ServeRunning: true, PID: 100}
	if b, err := ServeBackoff(ctx, s, running); b != nil || err != nil {
		t.Fatalf("before any count: %+v %v", b, err)
	}
	if err := WriteBackoff(ctx, s, BackoffFile, counted, 100); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   *Status
		want bool
	}{
		{"the serve that counted", running, true},
		{"another serve", &Status{ServeRunning: true, PID: 101}, false},
		{"serve not running", &Status{PID: 100}, false},
	} {
		b, err := ServeBackoff(ctx, s, tc.st)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := b != nil; got != tc.want {
			t.Errorf("%s: count %+v, want one: %v", tc.name, b, tc.want)
		} else if got && (b.RateLimited != 2 || b.Failed != 1 || !b.CountedAt.Equal(at) || !b.EarliestRetryAt.Equal(at)) {
			t.Errorf("%s: read back %+v", tc.name, b)
		}
	}
}
