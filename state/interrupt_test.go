package state

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// thaw counts commits from zero for the test, and undoes Freeze after it;
// Freeze is meant to be the last thing a process does. The tests using it
// are not parallel: no other test commits meanwhile.
func thaw(t *testing.T) {
	reset := func() {
		commits.mu.Lock()
		commits.frozen = false
		commits.done = 0
		commits.cond.Broadcast()
		commits.mu.Unlock()
	}
	reset()
	t.Cleanup(reset)
}

func lockedDir(t *testing.T) (*Dir, func() error) {
	t.Helper()
	d := OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return d, unlock
}

// returnsWithin reports whether f returned within d, and what it returned.
func returnsWithin(d time.Duration, f func() int) (int, bool) {
	done := make(chan int, 1)
	go func() { done <- f() }()
	select {
	case n := <-done:
		return n, true
	case <-time.After(d):
		return 0, false
	}
}

func TestFreezeWaitsForTheCommitInProgress(t *testing.T) {
	thaw(t)
	d, unlock := lockedDir(t)
	if err := d.Write(context.Background(), "p2ptls.toml", []byte("a"), SecretMode); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() { done <- Freeze() }()
	select {
	case <-done:
		t.Fatal("Freeze returned while a commit was in progress")
	case <-time.After(300 * time.Millisecond):
	}
	// The rest of the commit goes on: its second write does not block.
	if _, ok := returnsWithin(5*time.Second, func() int { _ = d.Write(context.Background(), "certs/x", []byte("b"), SecretMode); return 0 }); !ok {
		t.Fatal("a write of the commit in progress blocked after Freeze")
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-done:
		if n != 1 {
			t.Errorf("Freeze = %d finished commits, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Freeze did not return after the unlock")
	}
}

func TestFreezeReleasesIdleLocksAndBlocksNewCommits(t *testing.T) {
	thaw(t)
	d, unlock := lockedDir(t)
	// Runtime files are no commit: Freeze does not wait for them.
	if err := d.Write(context.Background(), RunDir+"/status.json", []byte("{}"), SecretMode); err != nil {
		t.Fatal(err)
	}
	n, ok := returnsWithin(5*time.Second, Freeze)
	if !ok {
		t.Fatal("Freeze waited although nothing was committing")
	}
	if n != 0 {
		t.Errorf("Freeze = %d finished commits, want 0", n)
	}
	// The lock is free for the next process, and its file is gone.
	if _, err := os.Stat(filepath.Join(d.Root(), LockFile)); !os.IsNotExist(err) {
		t.Errorf("lock file after Freeze: %v", err)
	}
	other, err := OpenDir(d.Root(), 500*time.Millisecond).Lock(context.Background(), "next")
	if err != nil {
		t.Fatalf("the lock is still held after Freeze: %v", err)
	}
	defer other()
	// The holder's own unlock afterwards is harmless.
	if err := unlock(); err != nil {
		t.Errorf("unlock after Freeze released it: %v", err)
	}
	// A change that would start a commit never happens.
	d2, unlock2 := func() (*Dir, func() error) {
		commits.mu.Lock()
		commits.frozen = false
		commits.mu.Unlock()
		d2, u := lockedDir(t)
		commits.mu.Lock()
		commits.frozen = true
		commits.mu.Unlock()
		return d2, u
	}()
	defer unlock2()
	if _, ok := returnsWithin(300*time.Millisecond, func() int { _ = d2.Write(context.Background(), "p2ptls.toml", []byte("a"), SecretMode); return 0 }); ok {
		t.Fatal("a new commit started after Freeze")
	}
	if _, err := os.Stat(filepath.Join(d2.Root(), "p2ptls.toml")); !os.IsNotExist(err) {
		t.Errorf("p2ptls.toml written after Freeze: %v", err)
	}
}

func TestFreezeWaitsForCommit(t *testing.T) {
	thaw(t)
	inside, release := make(chan struct{}), make(chan struct{})
	go Commit(func() error { close(inside); <-release; return nil })
	<-inside
	done := make(chan int, 1)
	go func() { done <- Freeze() }()
	select {
	case <-done:
		t.Fatal("Freeze returned during Commit")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case n := <-done:
		if n != 1 {
			t.Errorf("Freeze = %d finished commits, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Freeze did not return after Commit")
	}
	late := make(chan struct{})
	go func() { _ = Commit(func() error { return nil }); close(late) }()
	select {
	case <-late:
		t.Error("a Commit started after Freeze")
	case <-time.After(300 * time.Millisecond):
	}
	// Let it run now, so that it does not count in another test.
	commits.mu.Lock()
	commits.frozen = false
	commits.cond.Broadcast()
	commits.mu.Unlock()
	<-late
}
