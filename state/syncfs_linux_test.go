package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// writeOnce sets the mode asked for whatever the umask (it leaves out the
// chmod only when the umask takes nothing away), writes the data whole,
// and refuses a name that is there without touching it.
func TestWriteOnceModeIsPermUnderAnyUmask(t *testing.T) {
	oldMask := unix.Umask(0o022)
	oldRead := umask
	defer func() { unix.Umask(oldMask); umask = oldRead }()
	dir := t.TempDir()
	data := []byte("-----BEGIN CERTIFICATE-----\nx\n")
	for _, mask := range []int{0o000, 0o022, 0o027, 0o077, 0o277} {
		for _, perm := range []os.FileMode{SecretMode, PublicMode} {
			unix.Umask(mask)
			umask = sync.OnceValue(readUmask)
			if got := umask(); got != mask {
				t.Fatalf("umask read as %#o, want %#o", got, mask)
			}
			name := filepath.Join(dir, fmt.Sprintf("f-%o-%o", mask, perm))
			if err := writeOnce(name, data, perm); err != nil {
				t.Fatalf("umask %#o, mode %v: %v", mask, perm, err)
			}
			info, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != perm {
				t.Errorf("umask %#o: mode %v, want %v", mask, info.Mode().Perm(), perm)
			}
			if b, _ := os.ReadFile(name); string(b) != string(data) {
				t.Errorf("umask %#o: content %q, want %q", mask, b, data)
			}
			err = writeOnce(name, []byte("other"), perm)
			if !errors.Is(err, fs.ErrExist) {
				t.Errorf("writeOnce onto an existing file = %v, want fs.ErrExist", err)
			}
			if b, _ := os.ReadFile(name); string(b) != string(data) {
				t.Errorf("a refused writeOnce changed the file: %q", b)
			}
		}
	}
	// An umask that cannot be read makes it set the mode every time.
	unix.Umask(0o077)
	umask = func() int { return -1 }
	name := filepath.Join(dir, "unknown-umask")
	if err := writeOnce(name, data, PublicMode); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(name); err != nil || info.Mode().Perm() != PublicMode {
		t.Errorf("unknown umask: %v, %v; want mode %v", info, err, PublicMode)
	}
}

// A change synced whole has the file system synced in the background
// while it is staged (so that the final syncfs waits for little); those
// syncs are hints, whose failure fails nothing. Each file still gets its
// content and mode.
func TestApplyFlushesWhileStaging(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprintf("failing=%v", failing), func(t *testing.T) {
			testApplyFlushes(t, failing)
		})
	}
}

func testApplyFlushes(t *testing.T, failing bool) {
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	needSyncfs(t, root)
	var calls atomic.Int64
	old := backgroundSyncfs
	backgroundSyncfs = func(fd int) error {
		calls.Add(1)
		if failing {
			return unix.EIO
		}
		return old(fd)
	}
	defer func() { backgroundSyncfs = old }()
	var c Change
	n := wholeSyncMin + 10
	for i := range n {
		c.Writes = append(c.Writes,
			FileWrite{Name: fmt.Sprintf("certs/public/w%d/cert.pem", i), Data: []byte("c" + strconv.Itoa(i)), Perm: PublicMode},
			FileWrite{Name: fmt.Sprintf("certs/public/w%d/key.pem", i), Data: []byte("k" + strconv.Itoa(i)), Perm: SecretMode})
	}
	if err := d.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got < 1 || got > int64(2*n) {
		t.Errorf("%d background syncs for %d files, want 1 to one per file", got, 2*n)
	}
	for _, w := range c.Writes {
		p := filepath.Join(root, filepath.FromSlash(w.Name))
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != w.Perm {
			t.Errorf("%s: mode %v, want %v", w.Name, info.Mode().Perm(), w.Perm)
		}
		if b, _ := os.ReadFile(p); string(b) != string(w.Data) {
			t.Errorf("%s = %q, want %q", w.Name, b, w.Data)
		}
	}
}
