package state

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A lock taken on a state directory that did not exist, with nothing
// written under it, leaves nothing behind: a refused command creates
// nothing, not even the directory or its missing parents.
func TestLockOnMissingRootRemovesWhatItCreated(t *testing.T) {
	base := t.TempDir()
	tests := []struct {
		desc  string
		root  string
		work  func(d *Dir) error
		stays bool
	}{
		{"refused: nothing written", filepath.Join(base, "a"), func(*Dir) error { return nil }, false},
		{"missing parents too", filepath.Join(base, "b", "share", "p2ptls"), func(*Dir) error { return nil }, false},
		{"written: stays", filepath.Join(base, "c"), func(d *Dir) error { return d.Write(context.Background(), "x/y", []byte("1"), SecretMode) }, true},
		{"runtime status counts too", filepath.Join(base, "d"), func(d *Dir) error { return d.Write(context.Background(), RunDir+"/s", []byte("1"), SecretMode) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d := OpenDir(tc.root, time.Second)
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(tc.root, LockFile)); err != nil {
				t.Fatalf("no lock file while locked: %v", err)
			}
			if err := tc.work(d); err != nil {
				t.Fatal(err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(tc.root)
			if tc.stays != (err == nil) {
				t.Fatalf("root exists = %v after unlock, want %v", err == nil, tc.stays)
			}
			if !tc.stays {
				// Nothing under base but what the other cases made.
				if _, err := os.Stat(filepath.Join(base, "b")); !errors.Is(err, fs.ErrNotExist) && tc.desc == "missing parents too" {
					t.Errorf("parent left behind: %v", err)
				}
			}
		})
	}
	// A root that existed is never removed, empty or not.
	existing := filepath.Join(base, "existing")
	if err := os.Mkdir(existing, DirMode); err != nil {
		t.Fatal(err)
	}
	unlock, err := OpenDir(existing, time.Second).Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(existing); err != nil {
		t.Errorf("an existing empty root was removed: %v", err)
	}
}

// Processes racing on a missing root: each one that writes keeps the
// directory, one that does not never takes another's lock or file away, and
// a waiter whose root vanished (the first holder removed it unused) makes
// it again instead of failing.
func TestLockOnMissingRootConcurrent(t *testing.T) {
	for round := 0; round < 20; round++ {
		root := filepath.Join(t.TempDir(), "state")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				d := OpenDir(root, 10*time.Second) // each its own Dir, as separate processes
				unlock, err := d.Lock(context.Background(), "test")
				if err != nil {
					errs <- err
					return
				}
				if i == 7 {
					err = d.Write(context.Background(), "written", []byte("1"), SecretMode)
				}
				errs <- errors.Join(err, unlock())
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(root, "written")); err != nil || string(b) != "1" {
			t.Fatalf("round %d: the writer's file is gone: %q, %v", round, b, err)
		}
	}
}
