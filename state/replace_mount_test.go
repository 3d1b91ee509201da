package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/mounttest"
)

// copyFill stages the state at src as a restore of its backup would: all
// but the lock, the revision and run/.
func copyFill(src string) func(Staging) error {
	return func(st Staging) error {
		return filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			rel = filepath.ToSlash(rel)
			switch {
			case rel == ".":
				return nil
			case rel == RunDir:
				return filepath.SkipDir
			case rel == LockFile || rel == RevisionFile:
				return nil
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			if de.IsDir() {
				return st.Mkdir(rel, info.Mode().Perm())
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			w, err := st.Create(rel, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			return w.Close()
		})
	}
}

// stateTree is tree without what a restore keeps of its own at the top
// (its staging and kept directories) and without run/, which stays where
// it is (checked on its own).
func stateTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := tree(t, root)
	for k := range out {
		top, _, _ := strings.Cut(k, "/")
		if IsRestoreEntry(top) || top == RunDir {
			delete(out, k)
		}
	}
	return out
}

// mountFixture is an old state in a fresh mount point and a new state in
// a directory, with their trees.
type mountFixture struct {
	mnt, src    string
	old, new    map[string]string
	runStatus   string // a file of serve's runtime status in the mount
	runContents string
}

func newMountFixture(t *testing.T, kind string) mountFixture {
	t.Helper()
	f := mountFixture{mnt: mounttest.MountPoint(t, kind), src: filepath.Join(t.TempDir(), "new")}
	journalOld(t, f.mnt)
	// serve's runtime status, which a restore leaves where it is.
	f.runStatus, f.runContents = filepath.Join(f.mnt, RunDir, "serve.json"), `{"pid":1}`
	if err := MkdirAll(filepath.Dir(f.runStatus)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.runStatus, []byte(f.runContents), SecretMode); err != nil {
		t.Fatal(err)
	}
	if err := journalChange(context.Background(), journalOld(t, f.src)); err != nil {
		t.Fatal(err)
	}
	f.old, f.new = stateTree(t, f.mnt), stateTree(t, f.src)
	if diffTrees(f.old, f.new) == "" {
		t.Fatal("the old and the new state are the same")
	}
	return f
}

// replaceInto is the restore the kill tests cut short.
func replaceInto(ctx context.Context, mnt, src string, keep bool) (*Replaced, error) {
	return OpenDir(mnt, 5*time.Second).Replace(ctx, copyFill(src), ReplaceOptions{
		Now:   time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
		Check: func(context.Context, Store) (bool, error) { return keep, nil },
	})
}

// relock takes and releases the lock on root, as the next p2ptls command
// does.
func relock(t *testing.T, root string) {
	t.Helper()
	unlock, err := OpenDir(root, 5*time.Second).Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestIsMountPoint(t *testing.T) {
	plain := t.TempDir()
	if m, err := IsMountPoint(plain); err != nil || m {
		t.Errorf("a plain directory: mount point %v, %v", m, err)
	}
	for _, kind := range []string{"tmpfs", "bind"} {
		t.Run(kind, func(t *testing.T) {
			if m, err := IsMountPoint(mounttest.MountPoint(t, kind)); err != nil || !m {
				t.Errorf("mount point %v, %v", m, err)
			}
		})
	}
}

// A restore into a mount point replaces its content: the new state, the
// previous one kept inside it (or removed), run/ left in place, nothing
// of the restore's own left, a new revision.
func TestReplaceMountPoint(t *testing.T) {
	for _, kind := range []string{"tmpfs", "bind"} {
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s keep=%v", kind, keep), func(t *testing.T) {
				f := newMountFixture(t, kind)
				rev, _ := os.ReadFile(filepath.Join(f.mnt, RevisionFile))
				rep, err := replaceInto(context.Background(), f.mnt, f.src, keep)
				if err != nil {
					t.Fatal(err)
				}
				if diff := diffTrees(stateTree(t, f.mnt), f.new); diff != "" {
					t.Errorf("not the new state:\n%s", diff)
				}
				if b, _ := os.ReadFile(f.runStatus); string(b) != f.runContents {
					t.Errorf("run/ status %q, want it kept", b)
				}
				if b, _ := os.ReadFile(filepath.Join(f.mnt, RevisionFile)); string(b) == string(rev) || !strings.HasSuffix(string(b), " restore\n") {
					t.Errorf("revision %q (was %q): want a new one", b, rev)
				}
				entries, _ := os.ReadDir(f.mnt)
				var own []string
				for _, e := range entries {
					if IsRestoreEntry(e.Name()) {
						own = append(own, e.Name())
					}
				}
				wantKept := filepath.Join(f.mnt, "pre-restore-20261201T120000Z")
				switch {
				case keep && (rep.Kept != wantKept || !slices.Equal(own, []string{filepath.Base(wantKept)})):
					t.Errorf("kept %q, restore entries %v; want %s only", rep.Kept, own, wantKept)
				case !keep && (rep.Kept != "" || len(own) != 0):
					t.Errorf("kept %q, restore entries %v; want none", rep.Kept, own)
				}
				if keep {
					if diff := diffTrees(stateTree(t, wantKept), f.old); diff != "" {
						t.Errorf("the kept state is not the old one:\n%s", diff)
					}
					// Found and pointed out, never taken for the state.
					l := RestoreLeftovers(f.mnt)
					if len(l) != 1 || l[0].Kind != LeftoverKept || l[0].Path != wantKept {
						t.Errorf("leftovers %+v", l)
					}
					// A second forced restore keeps the first kept state
					// where it is, beside the next one.
					if _, err := replaceInto(context.Background(), f.mnt, f.src, true); err != nil {
						t.Fatal(err)
					}
					if diff := diffTrees(stateTree(t, wantKept), f.old); diff != "" {
						t.Errorf("the first kept state changed:\n%s", diff)
					}
					if _, err := os.Stat(wantKept + "-2"); err != nil {
						t.Errorf("second kept state: %v", err)
					}
				}
			})
		}
	}
}

// replaceSteps runs the restore undisturbed on a fresh fixture and
// returns its steps.
func replaceSteps(t *testing.T, keep bool) []string {
	t.Helper()
	f := newMountFixture(t, "tmpfs")
	var steps []string
	swapStep = func(s string) { steps = append(steps, s) }
	defer func() { swapStep = nil }()
	if _, err := replaceInto(context.Background(), f.mnt, f.src, keep); err != nil {
		t.Fatal(err)
	}
	return steps
}

// killedReplaceAt runs this test binary as a helper that does mode
// ("replace": the restore; "lock": take the lock, finishing a swap) and
// SIGKILLs itself at step; it checks that it was killed.
func killedReplaceAt(t *testing.T, f mountFixture, mode, step string, keep bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplaceMountHelperProcess$")
	cmd.Env = append(os.Environ(), "P2PTLS_TEST_REPLACE="+strings.Join([]string{mode, step, fmt.Sprint(keep), f.mnt, f.src}, "\n"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper (%s, kill at %q) was not killed there: %v\n%s", mode, step, err, out)
	}
}

// TestReplaceMountHelperProcess is the helper of killedReplaceAt; it does
// nothing in a normal run.
func TestReplaceMountHelperProcess(t *testing.T) {
	v := os.Getenv("P2PTLS_TEST_REPLACE")
	if v == "" {
		t.Skip("helper process of the mount-point kill tests")
	}
	args := strings.SplitN(v, "\n", 5)
	mode, at, keep, mnt, src := args[0], args[1], args[2] == "true", args[3], args[4]
	swapStep = func(s string) {
		if s == at {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute) // the signal is on its way
		}
	}
	var err error
	switch mode {
	case "replace":
		_, err = replaceInto(context.Background(), mnt, src, keep)
	case "lock":
		var unlock func() error
		if unlock, err = OpenDir(mnt, 5*time.Second).Lock(context.Background(), "test"); err == nil {
			err = unlock()
		}
	}
	fmt.Println("not killed:", err)
	os.Exit(0)
}

// A restore into a mount point killed at any step leaves, after the next
// Lock, exactly the old state (killed before its journal) or exactly the
// new one, byte for byte, with nothing of the swap left but, before the
// journal, a staging directory the next restore removes.
func TestReplaceMountKilledAtEachStep(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			steps := replaceSteps(t, keep)
			for _, want := range []string{"staged", "journaled", "moved out p2ptls.toml", "moved in certs", "moved in p2ptls.toml", "moved in p2ptls.rev", "swapped", "old state", "done"} {
				if !slices.Contains(steps, want) {
					t.Fatalf("steps %q lack %q", steps, want)
				}
			}
			// p2ptls.toml goes first and comes back last, before p2ptls.rev.
			if i := slices.Index(steps, "moved out p2ptls.toml"); i != 2 {
				t.Errorf("steps %q: p2ptls.toml is not the first to move out", steps)
			}
			if i := slices.Index(steps, "moved in p2ptls.toml"); steps[i+1] != "moved in p2ptls.rev" {
				t.Errorf("steps %q: p2ptls.toml is not the last to move in", steps)
			}
			outcomes := map[string]int{}
			for _, s := range steps {
				t.Run(s, func(t *testing.T) {
					f := newMountFixture(t, "tmpfs")
					killedReplaceAt(t, f, "replace", s, keep)
					relock(t, f.mnt)
					want, name := f.new, "new"
					if s == "staged" {
						want, name = f.old, "old"
					}
					outcomes[name]++
					if diff := diffTrees(stateTree(t, f.mnt), want); diff != "" {
						t.Errorf("killed at %q: not the %s state:\n%s", s, name, diff)
					}
					checkSwapLeftovers(t, f, name == "new" && keep)
				})
			}
			t.Logf("%d kill points: %v", len(steps), outcomes)
		})
	}
}

// checkSwapLeftovers: after the next Lock no journal or old directory is
// left, a staging directory only as one the next restore removes, and a
// kept state only when one was asked for, holding the old state.
func checkSwapLeftovers(t *testing.T, f mountFixture, kept bool) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(f.mnt, SwapJournalFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the journal is left: %v", err)
	}
	if b, _ := os.ReadFile(f.runStatus); string(b) != f.runContents {
		t.Errorf("run/ status %q, want it kept", b)
	}
	sawKept := false
	for _, l := range RestoreLeftovers(f.mnt) {
		switch l.Kind {
		case LeftoverStaging:
		case LeftoverKept:
			sawKept = true
			if diff := diffTrees(stateTree(t, l.Path), f.old); diff != "" {
				t.Errorf("the kept state %s is not the old one:\n%s", l.Path, diff)
			}
		default:
			t.Errorf("left: %+v", l)
		}
	}
	if sawKept != kept {
		t.Errorf("kept state there %v, want %v", sawKept, kept)
	}
}

// A Lock that finishes a swap and is killed at any of its steps is itself
// finished by the next Lock.
func TestReplaceMountRecoveryKilledAtEachStep(t *testing.T) {
	steps := replaceSteps(t, true)
	i := slices.Index(steps, "journaled")
	for _, s := range steps[i+1:] {
		t.Run(s, func(t *testing.T) {
			f := newMountFixture(t, "tmpfs")
			killedReplaceAt(t, f, "replace", "journaled", true)
			killedReplaceAt(t, f, "lock", s, true)
			relock(t, f.mnt)
			if diff := diffTrees(stateTree(t, f.mnt), f.new); diff != "" {
				t.Errorf("recovery killed at %q: not the new state:\n%s", s, diff)
			}
			checkSwapLeftovers(t, f, true)
		})
	}
}

// A journal that names entries out of the directory, or that is not a
// journal, is refused, not followed: every Lock says so and nothing moves.
func TestSwapJournalRefused(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"escape", `{"version":1,"phase":"swap","staged":".p2ptls-restore-1","old":".p2ptls-old-1","old_entries":["../x"],"new_entries":[]}`},
		{"lock file", `{"version":1,"phase":"swap","staged":".p2ptls-restore-1","old":".p2ptls-old-1","old_entries":["p2ptls.lock"],"new_entries":[]}`},
		{"other dir", `{"version":1,"phase":"swap","staged":"certs","old":".p2ptls-old-1","old_entries":[],"new_entries":[]}`},
		{"phase", `{"version":1,"phase":"later","staged":".p2ptls-restore-1","old":".p2ptls-old-1","old_entries":[],"new_entries":[]}`},
		{"garbage", `not json`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			journalOld(t, root)
			before := tree(t, root)
			if err := os.WriteFile(filepath.Join(root, SwapJournalFile), []byte(tc.body), SecretMode); err != nil {
				t.Fatal(err)
			}
			_, err := OpenDir(root, time.Second).Lock(context.Background(), "test")
			if err == nil || !strings.Contains(err.Error(), "journal cannot be read") {
				t.Fatalf("Lock: %v", err)
			}
			delete(before, SwapJournalFile)
			after := tree(t, root)
			delete(after, SwapJournalFile)
			if diff := diffTrees(after, before); diff != "" {
				t.Errorf("changed:\n%s", diff)
			}
		})
	}
}

// A running watch sees a content swap as a change of everything, and
// what it then reads is the whole new state.
func TestWatchSeesContentSwap(t *testing.T) {
	f := newMountFixture(t, "bind")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := OpenDir(f.mnt, 5*time.Second)
	feed := d.WatchChanges(ctx)
	if _, err := replaceInto(ctx, f.mnt, f.src, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second) // the poll alone notices within seconds
	for {
		select {
		case <-feed.C:
		case <-deadline:
			t.Fatal("the watch did not signal the swap")
		}
		ch := feed.Take()
		if !ch.Full {
			continue
		}
		cfg, err := LoadConfig(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range cfg.Mappings {
			ids = append(ids, m.ID)
		}
		if !slices.Equal(ids, []string{"a", "c"}) {
			t.Errorf("after the signal the mappings are %v, want the new state's [a c]", ids)
		}
		return
	}
}

// A staging directory whose removal stops half-way (here at an entry that
// is a mount point, as a kill stops it anywhere) keeps its marker: it is
// still known for a dead restore's and removed by the next restore, not
// taken for a previous state. Found by TestKilledRestoreIntoMountPoint:
// restores killed while removing an earlier one's staging directory left
// marker-less halves.
func TestRemoveStagingKeepsMarkerToTheEnd(t *testing.T) {
	for _, inside := range []bool{false, true} {
		t.Run(fmt.Sprintf("inside=%v", inside), func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(target, 0o700); err != nil {
				t.Fatal(err)
			}
			st, err := makeStaging(target, inside)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"a", "b", "z"} {
				if err := os.MkdirAll(filepath.Join(st.dir, n, "sub"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			st.release() // its restore died
			busy := mounttest.MountPoint(t, "tmpfs")
			// Bind the tmpfs over b: removing b fails with EBUSY.
			if out, err := exec.Command("mount", "--bind", busy, filepath.Join(st.dir, "b", "sub")).CombinedOutput(); err != nil {
				t.Fatalf("mount: %v %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("umount", filepath.Join(st.dir, "b", "sub")).Run() })
			removed, _, warns := cleanStaging(target)
			if len(removed) != 0 || len(warns) != 1 {
				t.Fatalf("removed %v, warnings %v", removed, warns)
			}
			if l := RestoreLeftovers(target); len(l) != 1 || l[0].Kind != LeftoverStaging {
				t.Errorf("after a removal cut short: %+v, want one staging leftover", l)
			}
			if err := exec.Command("umount", filepath.Join(st.dir, "b", "sub")).Run(); err != nil {
				t.Fatal(err)
			}
			if removed, _, warns := cleanStaging(target); len(removed) != 1 || len(warns) != 0 {
				t.Errorf("next clean: removed %v, warnings %v", removed, warns)
			}
		})
	}
}

// A reader that does not lock (a read-only command, serve's reload) and
// finds a swap cut short finishes it first, so it reads the new state,
// never half of each. Found by TestKilledRestoreIntoMountPoint, whose next
// command after a kill is "listener list".
func TestReaderFinishesInterruptedSwap(t *testing.T) {
	for _, s := range []string{"journaled", "moved out certs", "moved in certs", "moved in p2ptls.toml"} {
		t.Run(s, func(t *testing.T) {
			f := newMountFixture(t, "tmpfs")
			killedReplaceAt(t, f, "replace", s, false)
			cfg, err := LoadConfig(context.Background(), OpenDir(f.mnt, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range cfg.Mappings {
				ids = append(ids, m.ID)
			}
			if !slices.Equal(ids, []string{"a", "c"}) {
				t.Errorf("read mappings %v, want the new state's [a c]", ids)
			}
			if diff := diffTrees(stateTree(t, f.mnt), f.new); diff != "" {
				t.Errorf("not the new state:\n%s", diff)
			}
			checkSwapLeftovers(t, f, false)
		})
	}
}
