package statetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// conformanceWait bounds every wait of the suite for a store's signal.
const conformanceWait = 10 * time.Second

// Conformance runs the contract of state.Store (state/store.go,
// state/replace.go) and of state.Claimer against stores that open
// returns: each call a new, empty store with a lock timeout of at most a
// second. Differences by design are asked of the store, not skipped: a
// state.Local store (a directory) lets a reader without the lock see an
// Apply half-way for a moment (its journal makes it crash-atomic only);
// any other store must not.
func Conformance(t *testing.T, open func(t *testing.T) state.Store) {
	cases := []struct {
		name string
		run  func(t *testing.T, s state.Store)
	}{
		{"read write stat list delete", confFiles},
		{"apply deletes first and writes together", confApply},
		{"a failed apply changes nothing", confApplyFails},
		{"readers never see half an apply", confReaderAtomic},
		{"revision changes exactly with the desired state", confRevision},
		{"watch names changes and coalesces", confWatch},
		{"lock excludes and times out", confLock},
		{"claims exclude", confClaim},
		{"replace: dry run, check refusal, keep", confReplace},
		{"a cancelled context reads and writes nothing", confCancel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantContent(t *testing.T, s state.Reader, name, want string) {
	t.Helper()
	got, err := s.Read(ctxFor(t), name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if string(got) != want {
		t.Fatalf("read %s = %q, want %q", name, got, want)
	}
}

func wantMissing(t *testing.T, s state.Reader, name string) {
	t.Helper()
	if _, err := s.Read(ctxFor(t), name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read %s: err = %v, want fs.ErrNotExist", name, err)
	}
}

func wantList(t *testing.T, s state.Reader, dir string, want ...string) {
	t.Helper()
	got, err := s.List(ctxFor(t), dir)
	if err != nil {
		t.Fatalf("list %q: %v", dir, err)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("list %q = %q, want %q", dir, got, want)
	}
}

// update is a change under the lock, as state.Update makes it.
func update(t *testing.T, s state.Store, c state.Change) {
	t.Helper()
	ctx := ctxFor(t)
	unlock, err := s.Lock(ctx, "conformance")
	must(t, err)
	must(t, errors.Join(s.Apply(ctx, c), unlock()))
}

func write(name, data string, perm fs.FileMode) state.FileWrite {
	return state.FileWrite{Name: name, Data: []byte(data), Perm: perm}
}

func confFiles(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	must(t, s.Write(ctx, "certs/a/key.pem", []byte("secret"), state.SecretMode))
	must(t, s.Write(ctx, "certs/a/cert.pem", []byte("public"), state.PublicMode))
	must(t, s.Write(ctx, "certs/a/sub/x", []byte("x"), state.SecretMode))
	wantContent(t, s, "certs/a/key.pem", "secret")
	info, err := s.Stat(ctx, "certs/a/key.pem")
	must(t, err)
	if info.Size() != 6 || info.Mode().Perm() != state.SecretMode || info.IsDir() || info.Name() != "key.pem" {
		t.Errorf("stat key.pem = size %d mode %v dir %v name %q, want 6 0600 file key.pem", info.Size(), info.Mode(), info.IsDir(), info.Name())
	}
	if info, err := s.Stat(ctx, "certs/a/cert.pem"); err != nil || info.Mode().Perm() != state.PublicMode {
		t.Errorf("stat cert.pem = %v, %v, want mode 0644", info, err)
	}
	if info, err := s.Stat(ctx, "certs/a"); err != nil || !info.IsDir() {
		t.Errorf("stat of a directory holding files = %v, %v, want a directory", info, err)
	}
	if _, err := s.Stat(ctx, "certs/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing name: %v, want fs.ErrNotExist", err)
	}
	wantList(t, s, "certs/a", "cert.pem", "key.pem", "sub")
	wantList(t, s, "certs", "a")
	wantList(t, s, "certs/none")
	wantMissing(t, s, "certs/a/none")
	must(t, s.Write(ctx, "certs/a/key.pem", []byte("rotated"), state.SecretMode))
	wantContent(t, s, "certs/a/key.pem", "rotated")
	must(t, s.Delete(ctx, "certs/a/sub"))
	wantMissing(t, s, "certs/a/sub/x")
	wantList(t, s, "certs/a", "cert.pem", "key.pem")
	must(t, s.Delete(ctx, "certs/a/none")) // not there: no error
	must(t, s.Delete(ctx, "certs"))
	wantList(t, s, "certs")
	for _, bad := range []string{"", "../x", "/abs", "a/../../x"} {
		if err := s.Write(ctx, bad, []byte("x"), state.SecretMode); err == nil {
			t.Errorf("write %q: no error, want the name refused", bad)
		}
	}
}

func confApply(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	update(t, s, state.Change{Writes: []state.FileWrite{
		write("certs/m1/cert.pem", "old cert", state.PublicMode),
		write("certs/m1/old.pem", "stale", state.SecretMode),
		write("certs/m2/cert.pem", "m2", state.PublicMode),
	}})
	// Replace a directory with new content, and remove another, at once.
	update(t, s, state.Change{
		Deletes: []string{"certs/m1", "certs/m2"},
		Writes: []state.FileWrite{
			write("certs/m1/cert.pem", "new cert", state.PublicMode),
			write("certs/m1/key.pem", "new key", state.SecretMode),
		},
	})
	wantContent(t, s, "certs/m1/cert.pem", "new cert")
	wantContent(t, s, "certs/m1/key.pem", "new key")
	wantMissing(t, s, "certs/m1/old.pem")
	wantMissing(t, s, "certs/m2/cert.pem")
	wantList(t, s, "certs", "m1")
	if err := s.Apply(ctx, state.Change{}); err != nil {
		t.Errorf("empty apply: %v", err)
	}
}

func confApplyFails(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	update(t, s, state.Change{Writes: []state.FileWrite{write("certs/m/cert.pem", "kept", state.PublicMode)}})
	rev, err := s.Revision(ctx)
	must(t, err)
	unlock, err := s.Lock(ctx, "conformance")
	must(t, err)
	err = s.Apply(ctx, state.Change{
		Deletes: []string{"certs/m"},
		Writes:  []state.FileWrite{write("certs/n/cert.pem", "new", state.PublicMode), write("../escape", "x", state.SecretMode)},
	})
	must(t, unlock())
	if err == nil {
		t.Fatal("apply with a name outside the store: no error")
	}
	wantContent(t, s, "certs/m/cert.pem", "kept")
	wantMissing(t, s, "certs/n/cert.pem")
	if after, err := s.Revision(ctx); err != nil || after != rev {
		t.Errorf("revision after a failed apply = %q, %v, want %q", after, err, rev)
	}
}

// confReaderAtomic changes two files together many times while a reader
// without the lock reads both: they must always agree (non-local stores).
func confReaderAtomic(t *testing.T, s state.Store) {
	if _, local := s.(state.Local); local {
		t.Log("a directory store is crash-atomic; its readers may see an apply half-way (state/journal.go)")
		return
	}
	ctx := ctxFor(t)
	pair := func(i int) state.Change {
		v := fmt.Sprint(i)
		return state.Change{Writes: []state.FileWrite{write("records/a.toml", v, state.SecretMode), write("records/b.toml", v, state.SecretMode)}}
	}
	update(t, s, pair(0))
	const changes = 30
	var done atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	wg.Go(func() {
		for !done.Load() && ctx.Err() == nil {
			a, errA := s.Read(ctx, "records/a.toml")
			b, errB := s.Read(ctx, "records/b.toml")
			if errA != nil || errB != nil {
				t.Errorf("read: %v %v", errA, errB)
				return
			}
			// b is read after a: it may be newer, never older.
			var na, nb int
			fmt.Sscan(string(a), &na)
			fmt.Sscan(string(b), &nb)
			if nb < na {
				t.Errorf("reader saw a=%s b=%s: half of a change", a, b)
				return
			}
			reads.Add(1)
		}
	})
	// At least changes, and on until the reader has read a few times
	// (a fast store may finish before the reader starts), within a bound.
	for i := 1; i <= changes || (reads.Load() < 20 && i <= 50*changes); i++ {
		update(t, s, pair(i))
	}
	done.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Error("the reader read nothing")
	}
}

func confRevision(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	rev := func() string {
		t.Helper()
		r, err := s.Revision(ctx)
		must(t, err)
		return r
	}
	r0 := rev()
	if r0 == "" {
		t.Fatal("empty revision")
	}
	update(t, s, state.Change{Writes: []state.FileWrite{write(state.ConfigFile, "schema_version = 2\n", state.SecretMode)}})
	r1 := rev()
	if r1 == r0 {
		t.Fatal("revision unchanged by a change of p2ptls.toml under the lock")
	}
	if again := rev(); again != r1 {
		t.Fatalf("revision moved without a change: %q then %q", r1, again)
	}
	update(t, s, state.Change{Writes: []state.FileWrite{write("certs/m/cert.pem", "c", state.PublicMode)}})
	r2 := rev()
	if r2 == r1 {
		t.Fatal("revision unchanged by a change of a certificate under the lock")
	}
	// Runtime status and challenges are no part of the desired state.
	update(t, s, state.Change{Writes: []state.FileWrite{write(state.RunDir+"/status.json", "{}", state.SecretMode)}})
	must(t, s.Write(ctx, state.HTTP01Dir+"/token", []byte("t"), state.SecretMode))
	must(t, s.Delete(ctx, state.HTTP01Dir+"/token"))
	must(t, s.Write(ctx, state.RunDir+"/pid", []byte("1"), state.SecretMode))
	if r3 := rev(); r3 != r2 {
		t.Fatalf("revision changed by runtime writes: %q -> %q", r2, r3)
	}
}

// takeUntil waits for signals on f until Take has returned every name of
// want (gathered over several Takes), or Full.
func takeUntil(t *testing.T, f *state.Feed, want ...string) []string {
	t.Helper()
	var got []string
	deadline := time.After(conformanceWait)
	for {
		select {
		case _, ok := <-f.C:
			if !ok {
				t.Fatal("feed closed early")
			}
		case <-deadline:
			t.Fatalf("no signal for %q within %s; got %q", want, conformanceWait, got)
		}
		c := f.Take()
		if c.Full {
			t.Fatalf("Full for a change of %d files, want names %q", len(want), want)
		}
		got = append(got, c.Names...)
		if !slices.ContainsFunc(want, func(n string) bool { return !slices.Contains(got, n) }) {
			return got
		}
	}
}

func confWatch(t *testing.T, s state.Store) {
	// The store exists before the watch: its creation is no change of
	// names (a directory store reports its new root as Full).
	update(t, s, state.Change{Writes: []state.FileWrite{write(state.ConfigFile, "schema_version = 2\n", state.SecretMode)}})
	ctx, cancel := context.WithCancel(ctxFor(t))
	f := s.WatchChanges(ctx)
	w := s.Watch(ctx)
	// Two changes before anyone takes: the names of both, coalesced.
	update(t, s, state.Change{Writes: []state.FileWrite{write("records/a.toml", "1", state.SecretMode)}})
	update(t, s, state.Change{Writes: []state.FileWrite{write("records/b.toml", "1", state.SecretMode)}})
	got := takeUntil(t, f, "records/a.toml", "records/b.toml")
	select {
	case <-w:
	case <-time.After(conformanceWait):
		t.Fatal("Watch gave no signal for a change")
	}
	// Runtime writes are not reported; the next change's names are.
	must(t, s.Write(ctx, state.RunDir+"/status.json", []byte("{}"), state.SecretMode))
	update(t, s, state.Change{Deletes: []string{"records/a.toml"}})
	got = append(got, takeUntil(t, f, "records/a.toml")...)
	for _, n := range got {
		if n == state.RunDir+"/status.json" {
			t.Errorf("runtime write reported: %q", got)
		}
	}
	cancel()
	for range f.C { // drains, then ends: the feed closes with its context
	}
	select {
	case _, ok := <-w:
		for ok {
			_, ok = <-w
		}
	case <-time.After(conformanceWait):
		t.Fatal("Watch channel not closed when its context ended")
	}
}

func confLock(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	unlock, err := s.Lock(ctx, "first holder")
	must(t, err)
	errc := make(chan error, 1)
	go func() {
		u, err := s.Lock(ctx, "second")
		if err == nil {
			err = errors.Join(errors.New("second Lock taken while the first is held"), u())
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		WantFault(t, err, fault.Locked)
	case <-time.After(conformanceWait):
		t.Fatal("second Lock did not time out")
	}
	must(t, unlock())
	unlock, err = s.Lock(ctx, "after release")
	must(t, err)
	// A waiter gets the lock once it is released within the timeout.
	go func() {
		u, err := s.Lock(ctx, "waiter")
		if err == nil {
			err = u()
		}
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	must(t, unlock())
	select {
	case err := <-errc:
		must(t, err)
	case <-time.After(conformanceWait):
		t.Fatal("waiter never got the lock")
	}
}

func confClaim(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	release, ok, err := state.ClaimLocal(ctx, s, "mapping-a")
	must(t, err)
	if !ok {
		t.Fatal("first claim refused")
	}
	if _, ok, err := state.ClaimLocal(ctx, s, "mapping-a"); err != nil || ok {
		t.Fatalf("second claim of a held name = %v, %v; want refused", ok, err)
	}
	other, ok, err := state.ClaimLocal(ctx, s, "mapping-b")
	if err != nil || !ok {
		t.Fatalf("claim of another name = %v, %v", ok, err)
	}
	other()
	release()
	again, ok, err := state.ClaimLocal(ctx, s, "mapping-a")
	if err != nil || !ok {
		t.Fatalf("claim after release = %v, %v", ok, err)
	}
	again()
}

// stage writes files into a Replace's staging.
func stage(files map[string]string) func(state.Staging) error {
	return func(st state.Staging) error {
		made := map[string]bool{"": true, ".": true}
		var mkdir func(dir string) error
		mkdir = func(dir string) error {
			if made[dir] {
				return nil
			}
			if err := mkdir(path.Dir(dir)); err != nil {
				return err
			}
			made[dir] = true
			return st.Mkdir(dir, state.DirMode)
		}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			if err := mkdir(path.Dir(name)); err != nil {
				return err
			}
			w, err := st.Create(name, state.SecretMode)
			if err != nil {
				return err
			}
			if _, err := w.Write([]byte(files[name])); err != nil {
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		}
		return nil
	}
}

func confReplace(t *testing.T, s state.Store) {
	ctx := ctxFor(t)
	update(t, s, state.Change{Writes: []state.FileWrite{write(state.ConfigFile, "old", state.SecretMode), write("certs/old/cert.pem", "old", state.PublicMode)}})
	rev, err := s.Revision(ctx)
	must(t, err)
	staged := stage(map[string]string{state.ConfigFile: "new", "certs/new/cert.pem": "new"})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	if _, err := s.Replace(ctx, staged, state.ReplaceOptions{DryRun: true, Now: now}); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	wantContent(t, s, state.ConfigFile, "old")
	wantMissing(t, s, "certs/new/cert.pem")

	refused := errors.New("refused by check")
	var saw []byte
	_, err = s.Replace(ctx, staged, state.ReplaceOptions{Now: now, Check: func(ctx context.Context, cur state.Store) (bool, error) {
		saw, _ = cur.Read(ctx, state.ConfigFile)
		return false, refused
	}})
	if !errors.Is(err, refused) {
		t.Fatalf("replace with a refusing check: %v", err)
	}
	if !bytes.Equal(saw, []byte("old")) {
		t.Errorf("check saw p2ptls.toml = %q, want the current content", saw)
	}
	wantContent(t, s, state.ConfigFile, "old")
	wantMissing(t, s, "certs/new/cert.pem")
	if after, _ := s.Revision(ctx); after != rev {
		t.Error("revision changed by a refused replace")
	}

	must(t, s.Write(ctx, state.RunDir+"/status.json", []byte("running"), state.SecretMode))
	r, err := s.Replace(ctx, staged, state.ReplaceOptions{Now: now, Check: func(context.Context, state.Store) (bool, error) { return true, nil }})
	must(t, err)
	if r.Kept == "" {
		t.Error("Replaced.Kept is empty though check said keep")
	}
	wantContent(t, s, state.ConfigFile, "new")
	wantContent(t, s, "certs/new/cert.pem", "new")
	wantMissing(t, s, "certs/old/cert.pem")
	wantContent(t, s, state.RunDir+"/status.json", "running") // serve's status carries over
	if after, _ := s.Revision(ctx); after == rev {
		t.Error("revision unchanged by a replace")
	}
	r, err = s.Replace(ctx, stage(map[string]string{state.ConfigFile: "newer"}), state.ReplaceOptions{Now: now})
	must(t, err)
	if r.Kept != "" {
		t.Errorf("Replaced.Kept = %q without a check saying keep", r.Kept)
	}
	wantContent(t, s, state.ConfigFile, "newer")
	wantMissing(t, s, "certs/new/cert.pem")
}

func confCancel(t *testing.T, s state.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Read(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("read: %v, want context.Canceled", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("list: %v, want context.Canceled", err)
	}
	if err := s.Apply(ctx, state.Change{Writes: []state.FileWrite{write("certs/x", "x", state.SecretMode)}}); err == nil {
		t.Error("apply with a cancelled context: no error")
	}
	wantMissing(t, s, "certs/x")
}
