package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		release string
		want    bool
	}{
		{"5.8.0", true},
		{"5.7.19-generic", false},
		{"5.10.0-28-amd64", true},
		{"6.1.0-18-amd64", true},
		{"4.19.0", false},
		{"6.18.44-fc-v1045", true},
		{"5.8-rc1", true},
		{"5", false},
		{"", false},
		{"x.y", false},
	}
	for _, tc := range tests {
		if got := kernelAtLeast(tc.release, 5, 8); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 8) = %v, want %v", tc.release, got, tc.want)
		}
	}
}

// needSyncfs skips a test of the syncfs path where there is none.
func needSyncfs(t *testing.T, dir string) {
	t.Helper()
	w := openWholeFS(dir)
	if w == nil {
		t.Skip("no syncfs for " + dir + " (not Linux 5.8 or later, or not a local file system that has one)")
	}
	w.close()
}

// A change of wholeSyncMin files or more syncs the file system once; a
// smaller one fsyncs each file; a staging directory on another file
// system than the root's gets an fsync of each file too.
func TestApplySyncsLargeChangesWhole(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	needSyncfs(t, root)
	change := func(n int, prefix string) Change {
		var c Change
		for i := range n {
			c.Writes = append(c.Writes, FileWrite{Name: fmt.Sprintf("certs/public/%s%d/cert.pem", prefix, i), Data: []byte("c"), Perm: PublicMode})
		}
		return c
	}
	for _, tc := range []struct {
		n    int
		want bool
	}{{1, false}, {wholeSyncMin - 1, false}, {wholeSyncMin, true}, {3 * wholeSyncMin, true}} {
		var steps []string
		applyStep = func(s string) { steps = append(steps, s) }
		err := d.Apply(context.Background(), change(tc.n, fmt.Sprintf("n%d-", tc.n)))
		applyStep = nil
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(steps, "staged unsynced"); got != tc.want {
			t.Errorf("%d files: synced the file system whole = %v, want %v", tc.n, got, tc.want)
		}
	}
	w := openWholeFS(root)
	defer w.close()
	if !w.holds(root) || w.holds("/proc") {
		t.Error("holds does not tell the root's file system from /proc")
	}
}

// A syncfs that fails fails the change before its commit point: nothing
// changed, nothing staged left, no journal.
func TestApplySyncfsFailureChangesNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	needSyncfs(t, root)
	before := tree(t, root)
	old, oldMin := syncfsCall, wholeSyncMin
	syncfsCall = func(int) error { return unix.EIO }
	wholeSyncMin = 1
	defer func() { syncfsCall, wholeSyncMin = old, oldMin }()
	err := journalChange(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), "sync the file system") || !strings.Contains(err.Error(), unix.EIO.Error()) {
		t.Fatalf("change = %v, want the syncfs error", err)
	}
	if _, err := os.Lstat(filepath.Join(root, JournalFile)); err == nil {
		t.Error("a journal was written")
	}
	got := tree(t, root)
	for name, v := range got {
		if IsTempName(filepath.Base(name)) {
			t.Errorf("staged file left: %s", name)
		}
		if _, ok := before[name]; !ok && !strings.HasPrefix(v, "d") {
			t.Errorf("file left by a refused change: %s", name)
		}
	}
	for name, v := range before {
		if got[name] != v {
			t.Errorf("%s = %q, want %q", name, got[name], v)
		}
	}
}
