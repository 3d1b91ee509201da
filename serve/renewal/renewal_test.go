package renewal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// passCounter counts prompt passes through testHook; panics makes each
// of them panic.
func passCounter(t *testing.T, panics bool) <-chan struct{} {
	passes := make(chan struct{}, 16)
	testHook = func() {
		select {
		case passes <- struct{}{}:
		default:
		}
		if panics {
			panic("injected panic in the issuance loop")
		}
	}
	t.Cleanup(func() { testHook = nil })
	return passes
}

// running runs the loop over store until the test ends.
func running(t *testing.T, store state.Store, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Store: store, Log: log})
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitPass(t *testing.T, passes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-passes:
	case <-time.After(15 * time.Second):
		t.Fatalf("no prompt pass %s", what)
	}
}

// noPass checks that no prompt pass runs for a while: longer than the
// store's poll, so a pass a change poll would make has had its time.
func noPass(t *testing.T, passes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-passes:
		t.Fatalf("a prompt pass ran %s", what)
	case <-time.After(2500 * time.Millisecond):
	}
}

func newStore(t *testing.T) *state.Dir {
	store := state.OpenDir(filepath.Join(t.TempDir(), "state"), 5*time.Second)
	if err := state.SaveConfig(context.Background(), store, &state.Config{SchemaVersion: state.SchemaVersion}); err != nil {
		t.Fatal(err)
	}
	return store
}

// change makes a locked change of the state, as a p2ptls command does.
func change(t *testing.T, store state.Store, n int) {
	t.Helper()
	err := state.Update(context.Background(), store, "test", func(tx *state.Tx) error {
		tx.Config.Listeners = append(tx.Config.Listeners, state.Listener{Name: fmt.Sprintf("l%d", n), Addr: fmt.Sprintf("127.0.0.1:%d", 20000+n)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The prompt pass runs at start and then on each change of the state,
// not on a timer.
func TestPromptPassFollowsChanges(t *testing.T) {
	passes := passCounter(t, false)
	store := newStore(t)
	running(t, store, slog.New(slog.DiscardHandler))
	waitPass(t, passes, "at start")
	noPass(t, passes, "without a change")
	for i := range 3 {
		change(t, store, i)
		waitPass(t, passes, fmt.Sprintf("after change %d", i+1))
	}
}

// A mapping backing off after a failure is looked at again when its
// back-off ends, with no change of the state to wake the loop.
func TestPromptPassWhenBackOffEnds(t *testing.T) {
	passes := passCounter(t, false)
	store := newStore(t)
	ctx := context.Background()
	err := state.Update(ctx, store, "test", func(tx *state.Tx) error {
		tx.Config.Listeners = append(tx.Config.Listeners, state.Listener{Name: "web", Addr: "127.0.0.1:20443"})
		tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: "app", Listener: "web", Hosts: []string{"app.example.com"},
			Source: state.SourceACME, Challenge: state.ChallengeTLSALPN01})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	retryAt := time.Now().Add(3 * time.Second)
	if err := mappings.SaveMeta(ctx, store, "app", mappings.Meta{Source: state.SourceACME, Attempts: 1, RetryAt: retryAt}); err != nil {
		t.Fatal(err)
	}
	running(t, store, slog.New(slog.DiscardHandler))
	waitPass(t, passes, "at start")
	waitPass(t, passes, "when the back-off ended")
	if now := time.Now(); now.Before(retryAt) {
		t.Errorf("the pass ran %v before the back-off ended", retryAt.Sub(now))
	}
}

// A panic in a pass is recovered, logged at ERROR and counted, and the loop
// runs its next pass.
func TestLoopSurvivesAPanic(t *testing.T) {
	passes := passCounter(t, true)
	var logs syncBuffer
	store := newStore(t)
	before := edge.Panics()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Store: store, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	for i := range 3 {
		if i > 0 {
			change(t, store, i)
		}
		waitPass(t, passes, fmt.Sprintf("%d: the loop died", i+1))
	}
	cancel()
	<-done
	if n := edge.Panics() - before; n < 2 {
		t.Errorf("%d panics counted, want at least 2", n)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, `in="certificate issuance loop"`) {
		t.Errorf("panic not logged at ERROR:\n%s", out)
	}
}
