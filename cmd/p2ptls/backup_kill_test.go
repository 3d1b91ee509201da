package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKilledRestoreLeavesALoadableState kills "p2ptls restore --force" with
// SIGKILL at random moments, many times: whenever it dies, the state
// directory is exactly the old state or exactly the new one, and loads.
func TestKilledRestoreLeavesALoadableState(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	for i := range 20 { // enough files that a restore takes a while
		src.must(t, "mapping", "add", "--listener", "web", "--host", fmt.Sprintf("h%d.example.test", i), "--self-signed")
	}
	files := t.TempDir()
	archives := map[string]string{"a": filepath.Join(files, "a.tar.gz"), "b": filepath.Join(files, "b.tar.gz")}
	src.must(t, "backup", "--out", archives["a"])
	src.must(t, "mapping", "add", "--listener", "web", "--host", "later.example.test", "--self-signed")
	src.must(t, "backup", "--out", archives["b"])

	// What each archive restores to, and how long an undisturbed restore takes.
	want := map[string]map[string]string{}
	var took time.Duration
	for name, a := range archives {
		dir := filepath.Join(t.TempDir(), name)
		start := time.Now()
		if r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "restore", a); r.code != 0 {
			t.Fatalf("restore %s: %s", name, r.stderr)
		}
		took = max(took, time.Since(start))
		want[name] = stateSnapshot(t, dir)
	}
	if maps.Equal(want["a"], want["b"]) {
		t.Fatal("the two archives restore the same state")
	}

	target := filepath.Join(t.TempDir(), "state")
	if r := p2ptls(t, []string{"CONFIG_DIR=" + target}, "restore", archives["a"]); r.code != 0 {
		t.Fatal(r.stderr)
	}
	current := "a"
	outcomes := map[string]int{}
	for i := range 30 {
		next := map[string]string{"a": "b", "b": "a"}[current]
		cmd := command([]string{"CONFIG_DIR=" + target}, "restore", archives[next], "--force")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rand.N(took * 3 / 2))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()

		got := stateSnapshot(t, target)
		switch {
		case maps.Equal(got, want[next]):
			outcomes["new state"]++
			current = next
		case maps.Equal(got, want[current]):
			outcomes["old state"]++
		default:
			assertSameSnapshot(t, want[next], got)
			t.Fatalf("attempt %d: the state is neither the old nor the new one", i)
		}
		for _, args := range [][]string{{"listener", "list"}, {"mapping", "list"}, {"ca", "show"}} {
			if r := p2ptls(t, []string{"CONFIG_DIR=" + target}, args...); r.code != 0 {
				t.Fatalf("attempt %d: %v does not load the state: %s", i, args, r.stderr)
			}
		}
	}
	t.Logf("restore takes %v; after a kill the state was: %v", took, outcomes)

	// Leftovers of the killed restores are harmless and pointed out.
	next := map[string]string{"a": "b", "b": "a"}[current]
	r := p2ptls(t, []string{"CONFIG_DIR=" + target}, "restore", archives[next], "--force")
	if r.code != 0 {
		t.Fatalf("restore after the kills: %s", r.stderr)
	}
	assertSameSnapshot(t, want[next], stateSnapshot(t, target))
	if left, _ := filepath.Glob(target + ".restore-tmp-*"); len(left) > 0 && !strings.Contains(r.stderr, "left from an interrupted restore") {
		t.Errorf("leftovers %v not mentioned: %s", left, r.stderr)
	}
}
