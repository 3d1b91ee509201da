package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// journalOld is the state before the change of the kill tests: mappings a
// and b with their files.
func journalOld(t *testing.T, root string) *Dir {
	t.Helper()
	d := OpenDir(root, 5*time.Second)
	err := Update(context.Background(), d, "test", func(tx *Tx) error {
		tx.Config.Listeners = []Listener{{Name: "web", Addr: ":443"}}
		tx.Config.Mappings = []Mapping{
			{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceSelfSigned},
			{ID: "b", Listener: "web", Hosts: []string{"b.example.com"}, Source: SourceSelfSigned},
		}
		for name, body := range map[string]string{
			"certs/public/a/cert.pem": "old a cert", "certs/public/a/key.pem": "old a key", "certs/public/a/meta.toml": "old a meta",
			"certs/public/b/cert.pem": "old b cert", "certs/public/b/key.pem": "old b key",
		} {
			if err := tx.Write(context.Background(), name, []byte(body), SecretMode); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// journalChange is the change the kill tests cut short: b goes, a's
// directory is replaced (its meta.toml goes with the old directory), c is
// added, and the config names a and c.
func journalChange(ctx context.Context, d *Dir) error {
	return Update(ctx, d, "test change", func(tx *Tx) error {
		tx.Config.Mappings = []Mapping{
			{ID: "a", Listener: "web", Hosts: []string{"a.example.com", "www.a.example.com"}, Source: SourceSelfSigned},
			{ID: "c", Listener: "web", Hosts: []string{"c.example.com"}, Source: SourceSelfSigned},
		}
		if err := tx.Delete(ctx, "certs/public/b"); err != nil {
			return err
		}
		if err := tx.Delete(ctx, "certs/public/a"); err != nil {
			return err
		}
		for _, w := range []FileWrite{
			{Name: "certs/public/a/cert.pem", Data: []byte("new a cert"), Perm: PublicMode},
			{Name: "certs/public/a/key.pem", Data: []byte("new a key"), Perm: SecretMode},
			{Name: "certs/public/c/cert.pem", Data: []byte("new c cert"), Perm: PublicMode},
			{Name: "certs/public/c/key.pem", Data: []byte("new c key"), Perm: SecretMode},
		} {
			if err := tx.Write(ctx, w.Name, w.Data, w.Perm); err != nil {
				return err
			}
		}
		return nil
	})
}

// tree is everything under root but the lock, the revision and the memos: each
// directory and file with its mode, and each file's content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == MemoDir {
			return filepath.SkipDir // derived data, see Memo
		}
		if rel == "." || rel == LockFile || rel == RevisionFile || rel == RunDir {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if !de.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[filepath.ToSlash(rel)] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(got, want map[string]string) string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, "missing "+k)
		} else if g != v {
			d = append(d, fmt.Sprintf("%s: %q, want %q", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, "extra "+k)
		}
	}
	slices.Sort(d)
	return strings.Join(d, "\n")
}

// applySteps runs journalChange on a fresh state, recording the steps of
// its Apply, and returns them with the trees before and after.
func applySteps(t *testing.T) (steps []string, before, after map[string]string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	before = tree(t, root)
	applyStep = func(s string) { steps = append(steps, s) }
	defer func() { applyStep = nil }()
	if err := journalChange(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	after = tree(t, root)
	if _, err := os.Lstat(filepath.Join(root, JournalFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the journal is left after a finished change: %v", err)
	}
	return steps, before, after
}

// killedAt runs this test binary as a helper that does mode ("apply": the
// change; "lock": take the lock, recovering) on root and SIGKILLs itself
// when it reaches step, and checks that it did.
func killedAt(t *testing.T, root, mode, step string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyHelperProcess$")
	cmd.Env = append(os.Environ(), "P2PTLS_TEST_APPLY="+mode+"\n"+step+"\n"+strconv.Itoa(wholeSyncMin)+"\n"+root)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper (%s, kill at %q) was not killed there: %v\n%s", mode, step, err, out)
	}
}

// TestApplyHelperProcess is the helper of killedAt; it does nothing in a
// normal run.
func TestApplyHelperProcess(t *testing.T) {
	v := os.Getenv("P2PTLS_TEST_APPLY")
	if v == "" {
		t.Skip("helper process of the kill tests")
	}
	args := strings.SplitN(v, "\n", 4)
	mode, at, root := args[0], args[1], args[3]
	min, err := strconv.Atoi(args[2])
	if err != nil {
		t.Fatal(err)
	}
	wholeSyncMin = min
	applyStep = func(s string) {
		if s == at {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute) // the signal is on its way
		}
	}
	d := OpenDir(root, 5*time.Second)
	switch mode {
	case "apply":
		err = journalChange(context.Background(), d)
	case "lock":
		var unlock func() error
		if unlock, err = d.Lock(context.Background(), "test"); err == nil {
			err = unlock()
		}
	}
	fmt.Println("not killed:", err)
	os.Exit(0)
}

// A change killed at any step of its Apply leaves, after the next Lock,
// exactly the old state (killed before the journal is written) or exactly
// the new one (after), and the Lock that finishes a change writes a new
// revision so that serve reloads.
func TestApplyKilledAtEachStep(t *testing.T) {
	eachSync(t, testApplyKilledAtEachStep)
}

// eachSync runs a kill test both ways a change is made durable: an fsync
// of each file and directory, and one syncfs of the file system (a large
// change; here every change is large).
func eachSync(t *testing.T, test func(t *testing.T, syncfs bool)) {
	t.Run("fsync each", func(t *testing.T) { test(t, false) })
	t.Run("syncfs", func(t *testing.T) {
		if w := openWholeFS(t.TempDir()); w == nil {
			t.Skip("no syncfs here (not Linux 5.8 or later, or not a local file system that has one): every change fsyncs each file")
		} else {
			w.close()
		}
		old := wholeSyncMin
		wholeSyncMin = 1
		t.Cleanup(func() { wholeSyncMin = old })
		test(t, true)
	})
}

func testApplyKilledAtEachStep(t *testing.T, syncfs bool) {
	steps, before, after := applySteps(t)
	// a's directory is replaced by a staged tree, c's is a new one, and
	// c's record a file in a directory that is there.
	wantSteps := []string{"staged", "committed", "deleted certs/public/b", "deleted certs/public/a",
		"renamed certs/public/a", "renamed certs/public/c", "renamed mappings/c.toml", "cleaned"}
	if syncfs {
		wantSteps = append(wantSteps, "staged unsynced")
	}
	for _, want := range wantSteps {
		if !slices.Contains(steps, want) {
			t.Fatalf("steps %q lack %q", steps, want)
		}
	}
	if !syncfs && slices.Contains(steps, "staged unsynced") {
		t.Fatalf("a small change synced the whole file system: steps %q", steps)
	}
	for _, s := range steps {
		t.Run(s, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := journalOld(t, root)
			killedAt(t, root, "apply", s)
			rev, _ := os.ReadFile(filepath.Join(root, RevisionFile))
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			want, name := after, "new"
			if s == "staged" || s == "staged unsynced" {
				want, name = before, "old"
			}
			if diff := diffTrees(tree(t, root), want); diff != "" {
				t.Errorf("killed at %q: not the %s state:\n%s", s, name, diff)
			}
			newRev, _ := os.ReadFile(filepath.Join(root, RevisionFile))
			if changed := string(newRev) != string(rev); changed != (name == "new") {
				t.Errorf("killed at %q: revision changed = %v, want %v", s, changed, name == "new")
			}
		})
	}
}

// A recovery killed at any of its steps is finished by the next Lock.
func TestApplyRecoveryKilledAtEachStep(t *testing.T) {
	eachSync(t, func(t *testing.T, _ bool) { testApplyRecoveryKilledAtEachStep(t) })
}

func testApplyRecoveryKilledAtEachStep(t *testing.T) {
	steps, _, after := applySteps(t)
	i := slices.Index(steps, "committed")
	for _, s := range steps[i+1:] {
		t.Run(s, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := journalOld(t, root)
			killedAt(t, root, "apply", "committed")
			killedAt(t, root, "lock", s)
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			if diff := diffTrees(tree(t, root), after); diff != "" {
				t.Errorf("recovery killed at %q: not the new state:\n%s", s, diff)
			}
		})
	}
}

// What a killed Apply leaves is known for what it is: before the lock is
// taken again, doctor's FindLeftovers does not call the journal's staged
// files leftovers, and the journal is 0600.
func TestFindLeftoversWithAPendingChange(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	killedAt(t, root, "apply", "deleted certs/public/a")
	info, err := os.Stat(filepath.Join(root, JournalFile))
	if err != nil || info.Mode().Perm() != SecretMode {
		t.Fatalf("journal: %v, %v", info, err)
	}
	l, err := FindLeftovers(context.Background(), d, root)
	if err != nil || !l.Pending || len(l.TempFiles) != 0 || len(l.Orphans) != 0 {
		t.Errorf("FindLeftovers = %+v, %v; want pending and nothing listed", l, err)
	}
}

// An aside directory or staged file that no journal names is a leftover,
// listed once (not its content) and removed after a dead holder.
func TestLeftoverAsideDirectory(t *testing.T) {
	d, root := leftoverState(t)
	aside := filepath.Join(root, "certs/public/.old.tmp-123")
	if err := os.MkdirAll(aside, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(aside, "key.pem"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := FindLeftovers(context.Background(), d, root)
	if err != nil || !slices.Contains(l.TempFiles, "certs/public/.old.tmp-123") || slices.Contains(l.TempFiles, "certs/public/.old.tmp-123/key.pem") {
		t.Errorf("FindLeftovers = %+v, %v", l, err)
	}
	rec := "pid = 999999\nhost = 'h'\nsince = 2026-01-01T00:00:00Z\npurpose = 'x'\n"
	if err := os.WriteFile(filepath.Join(root, LockFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	_ = unlock()
	if _, err := os.Lstat(aside); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("aside directory not removed: %v", err)
	}
}

// A change that could not be completed is refused before anything is
// written: no temporary file, no journal, nothing changed.
func TestApplyRefusesBeforeWriting(t *testing.T) {
	tests := []struct {
		desc string
		c    Change
		want string
	}{
		{"onto a directory", Change{Writes: []FileWrite{{Name: "certs/public/a", Data: []byte("x"), Perm: SecretMode}}}, "is a directory"},
		{"below a file", Change{Writes: []FileWrite{{Name: "certs/public/a/cert.pem/x", Data: []byte("x"), Perm: SecretMode}}}, "not a directory"},
		{"a file and inside it", Change{Writes: []FileWrite{{Name: "n/x", Perm: SecretMode}, {Name: "n", Perm: SecretMode}}}, "inside it"},
		{"out of the root", Change{Writes: []FileWrite{{Name: "../x", Perm: SecretMode}}}, "invalid state file name"},
		{"the journal", Change{Writes: []FileWrite{{Name: JournalFile, Perm: SecretMode}}}, "cannot write"},
		{"a delete out of the root", Change{Deletes: []string{"../x"}}, "invalid state file name"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := journalOld(t, root)
			before := tree(t, root)
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			err = d.Apply(context.Background(), tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Apply = %v, want %q", err, tc.want)
			}
			if diff := diffTrees(tree(t, root), before); diff != "" {
				t.Errorf("a refused change wrote:\n%s", diff)
			}
		})
	}
}

// Deletes come first: a change may replace a directory with new content,
// and a delete of what is not there is no error.
func TestApplyReplacesADirectory(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	err = d.Apply(context.Background(), Change{
		Deletes: []string{"certs/public/a", "certs/public/a/key.pem", "certs/public/none", "certs/public/b/key.pem"},
		Writes: []FileWrite{
			{Name: "certs/public/a/cert.pem", Data: []byte("first"), Perm: PublicMode},
			{Name: "certs/public/a/cert.pem", Data: []byte("second"), Perm: PublicMode},
			{Name: "certs/public/b/key.pem", Data: []byte("new b key"), Perm: SecretMode},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, root)
	for name, want := range map[string]string{
		"certs/public/a/cert.pem":  "-rw-r--r-- second",
		"certs/public/a/key.pem":   "",
		"certs/public/a/meta.toml": "",
		"certs/public/b/key.pem":   "-rw------- new b key",
		"certs/public/b/cert.pem":  "-rw------- old b cert",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	for name := range got {
		if IsTempName(filepath.Base(name)) {
			t.Errorf("temporary name left: %s", name)
		}
	}
}

// A journal that does not parse, or names files it may not move, stops
// the next Lock with an error naming it, and nothing is moved.
func TestDamagedJournal(t *testing.T) {
	for desc, body := range map[string]string{
		"not json":      "{half",
		"version":       `{"version":9}`,
		"not a temp":    `{"version":1,"writes":[{"temp":"certs/public/a/key.pem","name":"p2ptls.toml"}]}`,
		"out of root":   `{"version":1,"writes":[{"temp":"../.x.tmp-1","name":"p2ptls.toml"}]}`,
		"aside a file ": `{"version":1,"deletes":[{"name":"p2ptls.toml","aside":"certs/public/a/cert.pem"}]}`,
	} {
		t.Run(desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := journalOld(t, root)
			if err := os.WriteFile(filepath.Join(root, JournalFile), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			before := tree(t, root)
			unlock, err := d.Lock(context.Background(), "test")
			if err == nil {
				_ = unlock()
				t.Fatal("Lock succeeded with a damaged journal")
			}
			if !strings.Contains(err.Error(), JournalFile) || fault.HintOf(err) == "" {
				t.Errorf("err = %v (hint %q)", err, fault.HintOf(err))
			}
			if diff := diffTrees(tree(t, root), before); diff != "" {
				t.Errorf("a damaged journal moved files:\n%s", diff)
			}
			if _, err := os.Lstat(filepath.Join(root, LockFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused Lock left its lock file: %v", err)
			}
		})
	}
}

// An Apply whose steps after the commit fail leaves the journal; the next
// Apply under the same lock finishes that change before its own.
func TestApplyFinishesAnUnfinishedChangeFirst(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	tmp, err := stageFile(filepath.Join(root, "certs/public/b"), "cert.pem", []byte("journaled"), PublicMode)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(journal{Version: journalVersion, Writes: []journalWrite{{Temp: "certs/public/b/" + filepath.Base(tmp), Name: "certs/public/b/cert.pem"}}})
	if err := os.WriteFile(filepath.Join(root, JournalFile), j, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(context.Background(), Change{Writes: []FileWrite{{Name: "certs/public/b/key.pem", Data: []byte("k2"), Perm: SecretMode}}}); err != nil {
		t.Fatal(err)
	}
	got := tree(t, root)
	if got["certs/public/b/cert.pem"] != "-rw-r--r-- journaled" || got["certs/public/b/key.pem"] != "-rw------- k2" {
		t.Errorf("tree = %v", got)
	}
	if _, ok := got[JournalFile]; ok {
		t.Error("journal left")
	}
}

// A dead holder that left a journal and other leftovers: the next Lock
// finishes the change first, and only then removes the leftovers, whose
// list the change may alter (an orphan it names stays).
func TestLockFinishesTheJournalThenRemovesLeftovers(t *testing.T) {
	d, root := leftoverState(t)
	tmp, err := stageFile(filepath.Join(root, "certs/public/keep"), "new.pem", []byte("n"), SecretMode)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(journal{Version: journalVersion, Writes: []journalWrite{{Temp: "certs/public/keep/" + filepath.Base(tmp), Name: "certs/public/keep/new.pem"}}})
	if err := os.WriteFile(filepath.Join(root, JournalFile), j, 0o600); err != nil {
		t.Fatal(err)
	}
	rec := "pid = 999999\nhost = 'h'\nsince = 2026-01-01T00:00:00Z\npurpose = 'x'\n"
	if err := os.WriteFile(filepath.Join(root, LockFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(afterCleanup)
	want = append(want, "certs/public/keep/new.pem")
	slices.Sort(want)
	if got := files(t, root); !slices.Equal(got, want) {
		t.Errorf("after the takeover:\n%q\nwant\n%q", got, want)
	}
}

// An Apply is one commit: refused whole when the caller's context has
// ended before it starts (interrupt semantics, see interrupt.go).
func TestApplyRefusedOnceTheContextEnded(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	before := tree(t, root)
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = d.Apply(ctx, Change{Deletes: []string{"certs/public/b"}, Writes: []FileWrite{{Name: "run/x", Perm: SecretMode}, {Name: ConfigFile, Data: []byte("x"), Perm: SecretMode}}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply = %v, want context.Canceled", err)
	}
	if diff := diffTrees(tree(t, root), before); diff != "" {
		t.Errorf("a refused Apply wrote:\n%s", diff)
	}
}

// A change whose staging fails part-way (here a file name too long for the
// file system, after hundreds staged at once) is refused with that error,
// and every file staged before it is removed: nothing changed, nothing left.
func TestApplyStagingFailsPartWay(t *testing.T) {
	long := strings.Repeat("x", 250)   // ".NAME.tmp-N" is longer than 255 bytes
	longer := strings.Repeat("y", 256) // too long as it is, in a staged tree
	tests := []struct {
		desc string
		at   int // index of the write that fails
		n    int
		name string
	}{
		{"first of one", 0, 1, "certs/public/a/" + long},
		{"first of many", 0, 300, "certs/public/a/" + long},
		{"in the middle", 150, 300, "certs/public/a/" + long},
		{"last", 299, 300, "certs/public/a/" + long},
		{"in a new directory", 150, 300, "certs/public/n150/" + longer},
		{"in a deleted directory", 150, 300, "certs/public/b/" + longer},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := journalOld(t, root)
			before := tree(t, root)
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			var c Change
			for i := range tc.n {
				name := fmt.Sprintf("certs/public/n%03d/cert.pem", i)
				if i%2 == 1 {
					name = fmt.Sprintf("mappings/n%03d.toml", i)
				}
				if i == tc.at {
					name = tc.name
				}
				c.Writes = append(c.Writes, FileWrite{Name: name, Data: []byte("new"), Perm: SecretMode})
			}
			if strings.HasPrefix(tc.name, "certs/public/b/") {
				c.Deletes = []string{"certs/public/b"}
			}
			err = d.Apply(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), path.Base(tc.name)) {
				t.Fatalf("Apply = %v, want the error about the long name", err)
			}
			got := tree(t, root)
			for name := range got {
				if IsTempName(filepath.Base(name)) {
					t.Errorf("staged file left: %s", name)
				}
			}
			// The directories staging made may stay (empty); no file may.
			for name, v := range got {
				if _, ok := before[name]; !ok && !strings.HasPrefix(v, "d") {
					t.Errorf("file left by a refused change: %s", name)
				}
			}
			for name, v := range before {
				if got[name] != v {
					t.Errorf("%s = %q, want %q", name, got[name], v)
				}
			}
		})
	}
}

// ioEach does every index once, returns the error of the lowest index that
// failed, and starts no index once one failed.
func TestIOEach(t *testing.T) {
	tests := []struct {
		n    int
		fail []int
	}{
		{0, nil}, {1, nil}, {1, []int{0}}, {7, nil}, {1000, nil},
		{1000, []int{999}}, {1000, []int{3, 2}}, {1000, []int{500, 10}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d/%v", tc.n, tc.fail), func(t *testing.T) {
			seen := make([]atomic.Int32, tc.n)
			err := ioEach(tc.n, func(i int) error {
				seen[i].Add(1)
				if slices.Contains(tc.fail, i) {
					return fmt.Errorf("failed %d", i)
				}
				return nil
			})
			if len(tc.fail) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				for i := range seen {
					if got := seen[i].Load(); got != 1 {
						t.Fatalf("index %d done %d times", i, got)
					}
				}
				return
			}
			// The lowest failing index is reached before any index above
			// it is handed out, so its error is the one returned.
			want := fmt.Sprintf("failed %d", slices.Min(tc.fail))
			if err == nil || err.Error() != want {
				t.Errorf("err = %v, want %q", err, want)
			}
			for i := range seen {
				if got := seen[i].Load(); got > 1 {
					t.Fatalf("index %d done %d times", i, got)
				}
			}
		})
	}
}

// Once an index fails, ioEach hands out no new one: those in flight finish.
func TestIOEachStops(t *testing.T) {
	const n = 10_000
	var done atomic.Int32
	err := ioEach(n, func(i int) error {
		done.Add(1)
		if i == 0 {
			return errors.New("first")
		}
		// Slow, so that the work could not finish before the failure is
		// seen, however the workers are scheduled.
		time.Sleep(time.Millisecond)
		return nil
	})
	if err == nil || err.Error() != "first" {
		t.Errorf("err = %v", err)
	}
	if d := done.Load(); d == n {
		t.Errorf("all %d indexes done after index 0 failed", d)
	}
}

// A journal written by an earlier p2ptls, which staged a file of a
// replaced directory above it (in the deleted directory's parent), is
// finished by the next Lock: the directory is made again, once, for all
// its files.
func TestLockFinishesAJournalOfFilesStagedAboveADeletedDirectory(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	var writes []journalWrite
	for _, f := range []string{"cert.pem", "key.pem"} {
		tmp, err := stageFile(filepath.Join(root, "certs/public"), f, []byte("staged "+f), SecretMode)
		if err != nil {
			t.Fatal(err)
		}
		writes = append(writes, journalWrite{Temp: "certs/public/" + filepath.Base(tmp), Name: "certs/public/a/sub/" + f})
	}
	j, _ := json.Marshal(journal{Version: journalVersion,
		Deletes: []journalDelete{{Name: "certs/public/a", Aside: "certs/public/.a.tmp-1"}}, Writes: writes})
	if err := os.WriteFile(filepath.Join(root, JournalFile), j, 0o600); err != nil {
		t.Fatal(err)
	}
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	got := tree(t, root)
	for name, want := range map[string]string{
		"certs/public/a/sub/cert.pem": "-rw------- staged cert.pem",
		"certs/public/a/sub/key.pem":  "-rw------- staged key.pem",
		"certs/public/a/sub":          "drwx------",
		"certs/public/a/cert.pem":     "",
		"certs/public/a/meta.toml":    "",
		JournalFile:                   "",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	for name := range got {
		if IsTempName(filepath.Base(name)) {
			t.Errorf("temporary name left: %s", name)
		}
	}
}

// Writes below a directory that is not there when the renames begin (new,
// or deleted by the change) are staged as one tree and renamed into place
// at once, with the modes Apply gives everything; the other writes are
// renamed one by one.
func TestApplyStagesNewDirectoriesWhole(t *testing.T) {
	mapping := func(id string) []FileWrite {
		return []FileWrite{
			{Name: "certs/public/" + id + "/cert.pem", Data: []byte(id + " cert"), Perm: PublicMode},
			{Name: "certs/public/" + id + "/key.pem", Data: []byte(id + " key"), Perm: SecretMode},
			{Name: "mappings/" + id + ".toml", Data: []byte(id + " record"), Perm: SecretMode},
		}
	}
	tests := []struct {
		desc    string
		old     bool // start from journalOld's state, not an empty one
		deletes []string
		ids     []string
		renamed []string
	}{
		{"empty state", false, nil, []string{"x", "y", "z"}, []string{"certs", "mappings"}},
		{"new mapping directories", true, nil, []string{"x", "y"}, []string{"certs/public/x", "mappings/x.toml", "certs/public/y", "mappings/y.toml"}},
		{"a replaced directory", true, []string{"certs/public/a"}, []string{"a"}, []string{"certs/public/a", "mappings/a.toml"}},
		{"a replaced file", true, []string{"certs/public/b/key.pem"}, []string{"b"}, []string{"certs/public/b/cert.pem", "certs/public/b/key.pem", "mappings/b.toml"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := OpenDir(root, 5*time.Second)
			if tc.old {
				d = journalOld(t, root)
			}
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			c := Change{Deletes: tc.deletes}
			for _, id := range tc.ids {
				c.Writes = append(c.Writes, mapping(id)...)
			}
			var renamed []string
			applyStep = func(s string) {
				if name, ok := strings.CutPrefix(s, "renamed "); ok {
					renamed = append(renamed, name)
				}
			}
			defer func() { applyStep = nil }()
			if err := d.Apply(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(renamed, tc.renamed) {
				t.Errorf("renamed %q, want %q", renamed, tc.renamed)
			}
			got := tree(t, root)
			for _, id := range tc.ids {
				for name, want := range map[string]string{
					"certs/public/" + id:               "drwx------",
					"certs/public/" + id + "/cert.pem": "-rw-r--r-- " + id + " cert",
					"certs/public/" + id + "/key.pem":  "-rw------- " + id + " key",
					"mappings/" + id + ".toml":         "-rw------- " + id + " record",
				} {
					if got[name] != want {
						t.Errorf("%s = %q, want %q", name, got[name], want)
					}
				}
			}
			for _, dir := range []string{"certs", "certs/public", "mappings"} {
				if got[dir] != "drwx------" {
					t.Errorf("%s = %q, want drwx------", dir, got[dir])
				}
			}
			for name := range got {
				if IsTempName(filepath.Base(name)) {
					t.Errorf("temporary name left: %s", name)
				}
			}
		})
	}
}

// A change fsynced file by file syncs, before its commit point, every
// directory that gained an entry (a staged file, a staged tree and each
// directory in it) and no other: an add into an existing certs/public
// syncs neither certs nor the root (that was two fsyncs of the sixteen
// of a mapping add). The journal is staged with the rest, naming what
// was staged: its fsync runs with theirs, and the commit is its rename.
func TestApplyStageSyncsTheDirectoriesThatGainedAnEntry(t *testing.T) {
	add := func(id string) []FileWrite {
		return []FileWrite{
			{Name: "certs/public/" + id + "/cert.pem", Data: []byte(id + " cert"), Perm: PublicMode},
			{Name: "certs/public/" + id + "/key.pem", Data: []byte(id + " key"), Perm: SecretMode},
			{Name: "mappings/" + id + ".toml", Data: []byte(id + " record"), Perm: SecretMode},
		}
	}
	tests := []struct {
		desc string
		old  bool // start from journalOld's state (certs/public and mappings there)
		c    Change
		want int // directories synced
	}{
		// The staged tree of x, the certs/public it is made in, mappings.
		{"add to existing directories", true, Change{Writes: add("x")}, 3},
		// .certs.tmp-N/public/x, .certs.tmp-N/public, .certs.tmp-N, the
		// root, .mappings.tmp-N.
		{"add to an empty state", false, Change{Writes: add("x")}, 5},
		// The replaced directory's staged tree and certs/public (the
		// delete's aside name is made after the commit point).
		{"replace a directory", true, Change{Deletes: []string{"certs/public/a"}, Writes: add("a")[:2]}, 2},
		// A temporary file in certs/public/b only.
		{"replace a file", true, Change{Writes: []FileWrite{{Name: "certs/public/b/key.pem", Data: []byte("k"), Perm: SecretMode}}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := OpenDir(root, 5*time.Second)
			if tc.old {
				d = journalOld(t, root)
			}
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			before := tree(t, root)
			var synced []string
			var staged map[string]string
			syncedDirs = func(names []string) {
				if staged == nil {
					synced = append(synced, names...)
				}
			}
			applyStep = func(s string) {
				if s == "staged" {
					staged = tree(t, root)
				}
			}
			defer func() { syncedDirs, applyStep = nil, nil }()
			if err := d.Apply(context.Background(), tc.c); err != nil {
				t.Fatal(err)
			}
			if staged == nil {
				t.Fatal("no step \"staged\"")
			}
			var journals []string
			for name := range staged {
				if _, ok := before[name]; ok {
					continue
				}
				if strings.HasPrefix(name, "."+JournalFile+".tmp-") {
					// Staged (and synced) with the rest; its name in
					// the root is the commit's rename, synced then.
					journals = append(journals, name)
					continue
				}
				if !slices.Contains(synced, parentName(name)) {
					t.Errorf("%s was staged, and %q, which holds it, was not synced (synced %q)", name, parentName(name), synced)
				}
			}
			if len(journals) != 1 {
				t.Fatalf("staged journals %q, want one", journals)
			}
			j, err := d.parseJournal([]byte(strings.TrimPrefix(staged[journals[0]], "-rw------- ")))
			if err != nil {
				t.Fatalf("staged journal: %v", err)
			}
			for _, w := range j.Writes {
				if _, ok := staged[w.Temp]; !ok {
					t.Errorf("the staged journal names %s, which was not staged", w.Temp)
				}
			}
			if len(synced) != tc.want {
				t.Errorf("synced %d directories %q before the commit point, want %d", len(synced), synced, tc.want)
			}
		})
	}
}

// A journal that a crash brings back after its change finished (its
// removal is not synced: the next sync of the root covers it) changes
// nothing when the next Lock rolls it again, even after the revision and
// the memos were written.
func TestAJournalBroughtBackAfterItsChangeChangesNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := journalOld(t, root)
	var journal []byte
	applyStep = func(s string) {
		if s == "cleaned" {
			journal, _ = os.ReadFile(filepath.Join(root, JournalFile))
		}
	}
	err := journalChange(context.Background(), d)
	applyStep = nil
	if err != nil {
		t.Fatal(err)
	}
	if len(journal) == 0 {
		t.Fatal("no journal at step \"cleaned\"")
	}
	after := tree(t, root)
	if err := os.WriteFile(filepath.Join(root, JournalFile), journal, SecretMode); err != nil {
		t.Fatal(err)
	}
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if diff := diffTrees(tree(t, root), after); diff != "" {
		t.Errorf("a journal rolled again changed the state:\n%s", diff)
	}
	if cfg, err := LoadConfig(context.Background(), d); err != nil || len(cfg.Mappings) != 2 || cfg.Mappings[1].ID != "c" {
		t.Errorf("config after the journal rolled again: %v, %v", cfg, err)
	}
}

// A staged tree is made under a name that is not there: when the name
// picked is taken (a directory left by someone else), the change fails
// before its commit point and leaves that directory as it was. Both
// kinds of staged tree: one staging directory (made with its files) and
// several (made before them); a small change and a large one.
func TestApplyNeverStagesIntoADirectoryThatIsThere(t *testing.T) {
	for _, tc := range []struct {
		desc, name string
		n          int
	}{
		{"lone, small", "certs/public/n000/cert.pem", 1},
		{"lone, large", "certs/public/n000/cert.pem", wholeSyncMin + 1},
		{"several, small", "certs/public/n000/sub/cert.pem", 1},
		{"several, large", "certs/public/n000/sub/cert.pem", wholeSyncMin + 1},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "state")
			d := journalOld(t, root)
			taken := filepath.Join(root, "certs", "public", ".n000.tmp-7")
			if err := os.Mkdir(taken, DirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(taken, "keep"), []byte("not the change's"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := tree(t, root)
			unlock, err := d.Lock(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			old := tempSuffix
			tempSuffix = func() uint64 { return 7 }
			defer func() { tempSuffix = old }()
			c := Change{Writes: []FileWrite{{Name: tc.name, Data: []byte("new"), Perm: SecretMode}}}
			for i := 1; i < tc.n; i++ {
				c.Writes = append(c.Writes, FileWrite{Name: fmt.Sprintf("mappings/x%03d.toml", i), Data: []byte("new"), Perm: SecretMode})
			}
			err = d.Apply(context.Background(), c)
			if err == nil || !errors.Is(err, fs.ErrExist) {
				t.Fatalf("Apply = %v, want the directory that is there", err)
			}
			got := tree(t, root)
			for name, v := range before {
				if got[name] != v {
					t.Errorf("%s = %q, want %q", name, got[name], v)
				}
			}
			for name, v := range got {
				if _, ok := before[name]; !ok && !strings.HasPrefix(v, "d") {
					t.Errorf("file left by a refused change: %s", name)
				}
			}
		})
	}
}

// writeTemp passes over a temporary name that is taken, leaving that file
// alone, and gives up after 100 taken names.
func TestWriteTempSkipsATakenName(t *testing.T) {
	dir := t.TempDir()
	taken := filepath.Join(dir, ".f.tmp-7")
	if err := os.WriteFile(taken, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := tempSuffix
	defer func() { tempSuffix = old }()
	next := uint64(6)
	tempSuffix = func() uint64 { next++; return next }
	name, err := writeTemp(dir, "f", []byte("ours"), SecretMode)
	if err != nil || filepath.Base(name) != ".f.tmp-8" {
		t.Fatalf("writeTemp = %q, %v; want .f.tmp-8", name, err)
	}
	if b, _ := os.ReadFile(taken); string(b) != "not ours" {
		t.Errorf("the taken file was changed: %q", b)
	}
	if b, _ := os.ReadFile(name); string(b) != "ours" {
		t.Errorf("%s = %q, want %q", name, b, "ours")
	}
	tempSuffix = func() uint64 { return 7 }
	if _, err := writeTemp(dir, "f", []byte("ours"), SecretMode); err == nil || !strings.Contains(err.Error(), "unused temporary name") {
		t.Errorf("writeTemp with every name taken = %v, want the error", err)
	}
}
