package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// holdLock takes the state lock in this test process, as another p2ptls
// process would.
func holdLock(t *testing.T, dir string) func() error {
	t.Helper()
	unlock, err := state.OpenDir(dir, time.Second).Lock(context.Background(), "test holder")
	if err != nil {
		t.Fatalf("take lock: %v", err)
	}
	return unlock
}

func TestLockedStateTimesOutWithExit3(t *testing.T) {
	dir := seededState(t)
	unlock := holdLock(t, dir)
	defer unlock()
	before := snapshot(t, dir)
	start := time.Now()
	r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "listener", "add", "api", "--addr", ":9443", "--lock-timeout", "400ms")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3; stderr %s", r.code, r.stderr)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Errorf("gave up after %v, before --lock-timeout", waited)
	}
	holder := fmt.Sprintf("locked by pid %d", os.Getpid())
	if !strings.Contains(r.stderr, holder) || !strings.Contains(r.stderr, "test holder") || !strings.Contains(r.stderr, "--lock-timeout") {
		t.Errorf("stderr %q should name the holder (%s) and --lock-timeout", r.stderr, holder)
	}
	assertSameSnapshot(t, before, snapshot(t, dir))
}

func TestLockWaitsForHolder(t *testing.T) {
	dir := seededState(t)
	unlock := holdLock(t, dir)
	cmd := command([]string{"CONFIG_DIR=" + dir}, "listener", "add", "api", "--addr", ":9443", "--lock-timeout", "20s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the command is now waiting on the lock
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("listener add after the holder let go: %v: %s", err, stderr.String())
	}
	if ls := listListeners(t, dir); len(ls) != 2 {
		t.Errorf("listeners after wait: %+v", ls)
	}
}

func TestConcurrentMutationsLoseNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	const n = 8
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p2ptls(t, []string{"CONFIG_DIR=" + dir}, "listener", "add", fmt.Sprintf("l%d", i), "--addr", fmt.Sprintf(":%d", 10443+i))
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("process %d: exit %d: %s", i, r.code, r.stderr)
		}
	}
	if ls := listListeners(t, dir); len(ls) != n {
		t.Errorf("%d listeners saved, want %d: %+v", len(ls), n, ls)
	}
}

func TestStaleLockOfDeadProcessIsTakenOver(t *testing.T) {
	dir := seededState(t)
	// A lock record left by a process that died: nobody holds the flock.
	stale := "pid = 999999\nhost = \"h\"\nsince = 2026-01-01T00:00:00Z\npurpose = \"crashed\"\n"
	if err := os.WriteFile(filepath.Join(dir, "p2ptls.lock"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "listener", "add", "api", "--addr", ":9443", "--lock-timeout", "1s")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "p2ptls.lock")); !os.IsNotExist(err) {
		t.Errorf("stale lock file still there: %v", err)
	}
}
