package management

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// lockCounter counts the locks taken on a store.
type lockCounter struct {
	state.Store
	locks atomic.Int64
}

func (l *lockCounter) Lock(ctx context.Context, purpose string) (func() error, error) {
	l.locks.Add(1)
	return l.Store.Lock(ctx, purpose)
}

// TestEnsureWithNothingToDoNeitherLocksNorLoads: serve's every start finds
// the management certificates current; telling so takes neither the lock
// nor a load of the desired state (2 s at 100k mappings), so it works even
// while the desired state does not load. What needs doing still does both.
func TestEnsureWithNothingToDoNeitherLocksNorLoads(t *testing.T) {
	d, root := newStore(t)
	mustInit(t, d, testNames(), now0)
	// A state that does not load: a change under the lock would refuse.
	if err := os.WriteFile(filepath.Join(root, state.ConfigFile), []byte("schema_version = 99\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &lockCounter{Store: d}
	srv, did, err := Ensure(context.Background(), s, testNames(), now0)
	if err != nil || did != "" || srv == nil {
		t.Fatalf("Ensure = %v, %q, %v; want the current server certificate, nothing done", srv, did, err)
	}
	if n := s.locks.Load(); n != 0 {
		t.Errorf("Ensure took the lock %d times with nothing to do", n)
	}
	// Other names: a change, under the lock, which the state refuses.
	if _, _, err := Ensure(context.Background(), s, pki.ParseNames([]string{"other.example.com"}), now0); err == nil {
		t.Error("Ensure re-issued the server certificate over a state that does not load")
	}
	if n := s.locks.Load(); n != 1 {
		t.Errorf("Ensure with something to do took the lock %d times, want 1", n)
	}
}
