package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMemoRetain: Retain marks the memo changed only when it drops an
// entry, saved or put since; a memo with nothing to drop is not rewritten.
func TestMemoRetain(t *testing.T) {
	tests := []struct {
		desc     string
		put      string // put before pruning, "" for none
		keep     map[string]bool
		rewrite  bool
		wantKept []string
	}{
		{"nothing to drop", "", map[string]bool{"a": true, "b": true}, false, []string{"a", "b"}},
		{"a saved entry dropped", "", map[string]bool{"a": true}, true, []string{"a"}},
		{"a put entry dropped", "c", map[string]bool{"a": true, "b": true}, true, []string{"a", "b"}},
		{"a put entry kept", "c", map[string]bool{"a": true, "b": true, "c": true}, true, []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			if err := os.MkdirAll(root, 0o700); err != nil {
				t.Fatal(err)
			}
			d := OpenDir(root, time.Second)
			m := OpenMemo(d, "prune-test")
			for _, n := range []string{"a", "b"} {
				m.Put(n, FileID{Ino: 1}, []byte(n), true)
			}
			m.Save()
			file := filepath.Join(root, filepath.FromSlash(MemoDir), "prune-test")
			before, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			d = OpenDir(root, time.Second) // a new command: the memo from its file
			m = OpenMemo(d, "prune-test")
			if tc.put != "" {
				m.Put(tc.put, FileID{Ino: 1}, []byte(tc.put), true)
			}
			m.Retain(func(name string) bool { return tc.keep[name] })
			m.Save()
			after, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if rewritten := !os.SameFile(before, after); rewritten != tc.rewrite {
				t.Errorf("memo rewritten: %v, want %v", rewritten, tc.rewrite)
			}
			m = OpenMemo(OpenDir(root, time.Second), "prune-test")
			for _, n := range []string{"a", "b", "c"} {
				_, ok := m.Trusted(n)
				want := false
				for _, k := range tc.wantKept {
					want = want || k == n
				}
				if ok != want {
					t.Errorf("entry %s kept: %v, want %v", n, ok, want)
				}
			}
		})
	}
}
