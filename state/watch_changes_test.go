package state

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// feedWatched is a state directory with a WatchChanges subscription.
type feedWatched struct {
	*watched
	f *Feed
}

func newFeedWatched(t *testing.T, poll bool) *feedWatched {
	t.Helper()
	w := newWatched(t, poll)
	ctx, cancel := context.WithCancel(context.Background())
	f := w.d.WatchChanges(ctx)
	t.Cleanup(func() {
		cancel()
		for range f.C {
		}
	})
	return &feedWatched{watched: w, f: f}
}

// until takes from the feed until want holds of what it gathered, or
// signalWait passes.
func (w *feedWatched) until(what string, want func(Changed) bool) Changed {
	w.t.Helper()
	var got Changed
	deadline := time.After(signalWait)
	for {
		select {
		case <-w.f.C:
		case <-deadline:
			w.t.Fatalf("%s: got %+v, not what was expected, within %v", what, got, signalWait)
		}
		c := w.f.Take()
		got.Full = got.Full || c.Full
		got.Names = append(got.Names, c.Names...)
		if want(got) {
			return got
		}
	}
}

func told(want ...string) func(Changed) bool {
	return func(c Changed) bool {
		for _, n := range want {
			if !slices.Contains(c.Names, n) {
				return false
			}
		}
		return !c.Full
	}
}

func full(c Changed) bool { return c.Full }

func addMapping(t *testing.T, d *Dir, id string) {
	t.Helper()
	err := Update(context.Background(), d, "test", func(tx *Tx) error {
		tx.Config.Mappings = append(tx.Config.Mappings, Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: SourceManual})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWatchChangesNames: a subscriber learns the names each change
// touched, from a locked change's revision and from hand edits, with
// fsnotify and with the poll alone; what cannot be told is Full.
func TestWatchChangesNames(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newFeedWatched(t, mode.poll)
			err := Update(context.Background(), w.d, "test", func(tx *Tx) error {
				tx.Config.Listeners = append(tx.Config.Listeners, Listener{Name: "web", Addr: "127.0.0.1:8443"})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			w.until("a listener added", told(ConfigFile))
			recordPath := filepath.Join(w.root, "mappings", "app.toml")
			steps := []struct {
				what string
				do   func()
				want func(Changed) bool
			}{
				{"a mapping added under the lock", func() { addMapping(t, w.d, "app") }, told("mappings/app.toml")},
				{"two changes before the reader wakes", func() {
					addMapping(t, w.d, "two")
					addMapping(t, w.d, "three")
				}, told("mappings/two.toml", "mappings/three.toml")},
				{"a record edited in place", func() {
					b, err := os.ReadFile(recordPath)
					if err != nil {
						t.Fatal(err)
					}
					w.write("mappings/app.toml", string(b)+"# edited\n")
				}, told("mappings/app.toml")},
				{"p2ptls.toml edited in place", func() {
					b, err := os.ReadFile(filepath.Join(w.root, ConfigFile))
					if err != nil {
						t.Fatal(err)
					}
					w.write(ConfigFile, string(b)+"# edited\n")
				}, told(ConfigFile)},
				{"a record created by hand", func() { w.write("mappings/new.toml", "id = 'new'\n") }, told("mappings/new.toml")},
			}
			for _, s := range steps {
				s.do()
				got := w.until(s.what, s.want)
				for _, n := range got.Names {
					if IsRuntime(n) || n == RevisionFile || n == LockFile {
						t.Errorf("%s: told %q, which is no part of the desired state", s.what, n)
					}
				}
			}
			// A record removed by hand: fsnotify names it; the poll
			// alone keeps no names (only their hashes), so it says Full.
			if err := os.Remove(recordPath); err != nil {
				t.Fatal(err)
			}
			if mode.poll {
				w.until("a record removed by hand", full)
			} else {
				w.until("a record removed by hand", told("mappings/app.toml"))
			}
		})
	}
}

// TestWatchChangesFullWhenRootReplaced: another directory in the root's
// place (restore) is Full, whatever its revision log says.
func TestWatchChangesFullWhenRootReplaced(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newFeedWatched(t, mode.poll)
			staged := w.root + ".restore-tmp-1"
			if err := os.MkdirAll(staged, DirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(staged, ConfigFile), []byte("schema_version = 2\n"), SecretMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(w.root, w.root+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(staged, w.root); err != nil {
				t.Fatal(err)
			}
			w.until("the root replaced", full)
		})
	}
}

// TestRevisionLog: every locked change appends its names to p2ptls.rev,
// runtime names never; a change of more than revNamesMax names is Full;
// the log keeps at most revLogMax changes.
func TestRevisionLog(t *testing.T) {
	ctx := context.Background()
	d := OpenDir(filepath.Join(t.TempDir(), "state"), 5*time.Second)
	change := func(c Change, runtime ...string) {
		t.Helper()
		unlock, err := d.Lock(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range runtime {
			if err := d.Write(ctx, n, []byte("x"), SecretMode); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
	}
	read := func() revFile {
		t.Helper()
		r, ok, err := readRevFile(d.Root())
		if err != nil || !ok {
			t.Fatalf("revision log: ok %v, err %v", ok, err)
		}
		return r
	}
	change(Change{Writes: []FileWrite{{Name: "mappings/a.toml", Data: []byte("id = 'a'\n"), Perm: SecretMode}}}, "run/status.json", HTTP01Dir+"/tok")
	r := read()
	if r.Seq != 1 || len(r.Log) != 1 || !slices.Equal(r.Log[0].Names, []string{"mappings/a.toml"}) {
		t.Fatalf("after one change: %+v", r)
	}
	change(Change{Deletes: []string{"mappings/a.toml"}, Writes: []FileWrite{{Name: "certs/public/b/cert.pem", Data: []byte("x"), Perm: PublicMode}}})
	r = read()
	if r.Seq != 2 || !slices.Equal(r.Log[1].Names, []string{"certs/public/b/cert.pem", "mappings/a.toml"}) {
		t.Fatalf("after a second change: %+v", r)
	}
	if n, ok := r.since(1); !ok || len(n) != 2 {
		t.Errorf("since 1: %v %v", n, ok)
	}

	// A lock without a change writes no revision.
	unlock, err := d.Lock(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got.Seq != 2 {
		t.Errorf("a lock without a change made revision %d", got.Seq)
	}

	var big Change
	for i := range revNamesMax + 1 {
		big.Writes = append(big.Writes, FileWrite{Name: fmt.Sprintf("mappings/m%04d.toml", i), Data: []byte("x"), Perm: SecretMode})
	}
	change(big)
	r = read()
	if last := r.Log[len(r.Log)-1]; !last.Full || last.Names != nil {
		t.Errorf("a change of %d names: %+v, want full", len(big.Writes), last)
	}
	if _, ok := r.since(2); ok {
		t.Error("since 2 passes over a full change")
	}
	for i := range revLogMax + 5 {
		change(Change{Writes: []FileWrite{{Name: "mappings/c.toml", Data: fmt.Appendf(nil, "%d", i), Perm: SecretMode}}})
	}
	r = read()
	if len(r.Log) != revLogMax || r.Log[len(r.Log)-1].Seq != r.Seq {
		t.Errorf("log of %d entries ending at %d, want %d ending at %d", len(r.Log), r.Log[len(r.Log)-1].Seq, revLogMax, r.Seq)
	}
	if _, ok := r.since(3); ok {
		t.Error("since 3: the log no longer reaches back, yet it says it does")
	}
	if n, ok := r.since(r.Seq - 2); !ok || !slices.Equal(n, []string{"mappings/c.toml", "mappings/c.toml"}) {
		t.Errorf("since seq-2: %v %v", n, ok)
	}
}

// TestRevisionSince covers the catch-up rule on its own.
func TestRevisionSince(t *testing.T) {
	r := revFile{Epoch: "e", Seq: 5, Log: []revEntry{{Seq: 3, Names: []string{"a"}}, {Seq: 4, Full: true}, {Seq: 5, Names: []string{"b"}}}}
	for _, c := range []struct {
		since uint64
		want  []string
		ok    bool
	}{
		{5, nil, true},
		{4, []string{"b"}, true},
		{3, nil, false}, // passes over a full change
		{2, nil, false},
		{1, nil, false}, // before the log
		{6, nil, false}, // ahead of it: another sequence
	} {
		got, ok := r.since(c.since)
		if ok != c.ok || !slices.Equal(got, c.want) {
			t.Errorf("since %d: %v %v, want %v %v", c.since, got, ok, c.want, c.ok)
		}
	}
}

// TestWatchMergeBackgroundScan: what a background restat reports is
// delivered, except what the hub restatted while it ran (an event's file,
// delivered already, and newer than the scan's look); a scan made out of
// date by a later one is dropped.
func TestWatchMergeBackgroundScan(t *testing.T) {
	key := func(h *hub, n string) uint64 { return maphash.String(h.seed, n) }
	tests := []struct {
		name     string
		during   []string // restatted while the scan ran
		changed  []string // the scan found changed
		vanished []string // the scan found gone
		stale    bool
		want     Changed
	}{
		{"changes found", nil, []string{"mappings/a.toml", "mappings/b.toml"}, nil, false, Changed{Names: []string{"mappings/a.toml", "mappings/b.toml"}}},
		{"one seen meanwhile", []string{"mappings/a.toml"}, []string{"mappings/a.toml", "mappings/b.toml"}, nil, false, Changed{Names: []string{"mappings/b.toml"}}},
		{"gone unseen", nil, nil, []string{"mappings/c.toml"}, false, Changed{Full: true}},
		{"gone, but seen meanwhile", []string{"mappings/c.toml"}, nil, []string{"mappings/c.toml"}, false, Changed{}},
		{"out of date", nil, []string{"mappings/a.toml"}, []string{"mappings/c.toml"}, true, Changed{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &hub{seed: maphash.MakeSeed(), during: map[uint64]struct{}{}, subs: map[*Feed]struct{}{}, gen: 1, scanning: true}
			f := newFeed(true)
			h.subs[f] = struct{}{}
			r := scanResult{gen: 1}
			if tc.stale {
				r.gen = 0
			}
			for _, n := range tc.during {
				h.during[key(h, n)] = struct{}{}
				h.seen.set(key(h, n), 7)
			}
			for _, n := range tc.changed {
				r.names, r.keys = append(r.names, n), append(r.keys, key(h, n))
				r.seen.set(key(h, n), 1)
			}
			for _, n := range tc.vanished {
				r.vanished = append(r.vanished, key(h, n))
			}
			h.merge(r)
			if got := f.Take(); got.Full != tc.want.Full || !slices.Equal(got.Names, tc.want.Names) {
				t.Errorf("delivered %+v, want %+v", got, tc.want)
			}
			for _, n := range tc.during {
				if !tc.stale && seenAt(h.seen, key(h, n)) != 7 {
					t.Errorf("%s: the scan's older look replaced what the hub restatted", n)
				}
			}
			if h.scanning || len(h.during) != 0 {
				t.Error("merge left the scan running")
			}
		})
	}
}

// TestRevisionAfterRecovery: a change a dead holder committed, which the
// next Lock rolls forward, names its files in the revision like any other.
func TestRevisionAfterRecovery(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	if err := os.MkdirAll(filepath.Join(root, "mappings"), DirMode); err != nil {
		t.Fatal(err)
	}
	tmp, err := stageFile(filepath.Join(root, "mappings"), "a.toml", []byte("id = 'a'\n"), SecretMode)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(journal{Version: journalVersion, Writes: []journalWrite{{Temp: "mappings/" + filepath.Base(tmp), Name: "mappings/a.toml"}}})
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
	r, ok, err := readRevFile(root)
	if err != nil || !ok || len(r.Log) == 0 {
		t.Fatalf("no revision after the recovery: %+v %v %v", r, ok, err)
	}
	if last := r.Log[len(r.Log)-1]; last.Full || !slices.Equal(last.Names, []string{"mappings/a.toml"}) {
		t.Errorf("the recovery's revision is %+v, want mappings/a.toml", last)
	}
}

// TestWatchHoldsEditsWhileLocked: the files of a locked change reach a
// subscriber all at once, with its revision, not one by one as they are
// renamed in; a hand edit made while a lock is held without a change still
// arrives (after heldEditsMax).
func TestWatchHoldsEditsWhileLocked(t *testing.T) {
	w := newFeedWatched(t, false)
	ctx := context.Background()
	unlock, err := w.d.Lock(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		c := Change{Writes: []FileWrite{{Name: RecordName(id), Data: fmt.Appendf(nil, "id = '%s'\n", id), Perm: SecretMode}}}
		if err := w.d.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.f.C:
			t.Fatalf("signalled while the change of record %s was not committed yet: %+v", id, w.f.Take())
		case <-time.After(300 * time.Millisecond): // many debounces
		}
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.f.C:
	case <-time.After(signalWait):
		t.Fatal("no signal after the change was committed")
	}
	if got := w.f.Take(); got.Full || !slices.Equal(got.Names, []string{"mappings/a.toml", "mappings/b.toml"}) {
		t.Errorf("got %+v, want both records at once", got)
	}

	// A lock held without a change: the hand edit waits, then comes.
	unlock, err = w.d.Lock(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	w.write("mappings/hand.toml", "id = 'hand'\n")
	w.until("a hand edit while a lock is held", told("mappings/hand.toml"))
}
