// Package statetest holds what tests need to prove that a refused command
// or request left a state directory exactly as it was.
package statetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// Snapshot records every file and directory under dir with its mode and,
// for files, the SHA-256 of its content. A missing dir is an empty snapshot.
// The memos (state.MemoDir, and the run/ directory a memo creates) are left
// out: derived data that any command may rewrite, no part of the state; so
// are the ACME order claims (state.ClaimsDir), which an interrupted order
// may leave, unlocked.
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == state.MemoDir || rel == filepath.FromSlash(state.ClaimsDir) {
			return filepath.SkipDir
		}
		if rel == state.RunDir {
			return nil
		}
		// A running serve rewrites its status in run/ while the walk goes
		// by: its temporary files come and go.
		inRun := strings.HasPrefix(rel, state.RunDir+string(filepath.Separator))
		if inRun && state.IsTempName(d.Name()) {
			return nil
		}
		info, err := d.Info()
		if inRun && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		entry := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if inRun && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			entry += " " + hex.EncodeToString(sum[:])
		}
		snap[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return snap
}

// AssertSame reports every path that disappeared, changed or appeared.
func AssertSame(t testing.TB, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s disappeared", p)
		} else if a != b {
			t.Errorf("%s changed: %s -> %s", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// WantFault fails unless err has kind and its message contains every substr.
func WantFault(t testing.TB, err error, kind fault.Kind, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want kind %v containing %q", kind, substrs)
	}
	if got := fault.KindOf(err); got != kind {
		t.Errorf("kind of %q = %v, want %v", err, got, kind)
	}
	for _, sub := range substrs {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not contain %q", err, sub)
		}
	}
}

// WantHint fails unless err's hint contains substr.
func WantHint(t testing.TB, err error, substr string) {
	t.Helper()
	if h := fault.HintOf(err); !strings.Contains(h, substr) {
		t.Errorf("hint of %q = %q, want it to contain %q", err, h, substr)
	}
}
