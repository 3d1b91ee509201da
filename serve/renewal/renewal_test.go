package renewal

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
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

// A panic in a pass is recovered, logged at ERROR and counted, and the loop
// runs its next pass.
func TestLoopSurvivesAPanic(t *testing.T) {
	promptInterval = 10 * time.Millisecond
	passes := make(chan struct{}, 16)
	testHook = func() {
		select {
		case passes <- struct{}{}:
		default:
		}
		panic("injected panic in the issuance loop")
	}
	t.Cleanup(func() { testHook = nil })
	var logs syncBuffer
	store := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	before := edge.Panics()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Store: store, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	for i := range 3 {
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatalf("pass %d did not run: the loop died", i+1)
		}
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
