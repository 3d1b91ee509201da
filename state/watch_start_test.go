package state

import (
	"context"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestWatchIgnoresCache: derived data under run/cache/ (the memos of loaded
// records, written by readers without the lock) is no change of the
// desired state: creating the directory, files renamed into it, rewritten
// and removed change neither the revision nor signal Watch or
// WatchChanges, with fsnotify and with the poll alone. A change after
// them is told alone.
func TestWatchIgnoresCache(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newWatched(t, mode.poll)
			wctx, cancel := context.WithCancel(context.Background())
			feed := w.d.WatchChanges(wctx)
			t.Cleanup(func() {
				cancel()
				for range feed.C {
				}
			})
			before := w.rev()
			cache := filepath.Join(w.root, filepath.FromSlash(MemoDir))
			if err := os.MkdirAll(cache, DirMode); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				// As the memo is written: a temporary file renamed over
				// the last one.
				tmp := filepath.Join(cache, fmt.Sprintf(".records.tmp-%d", i))
				if err := os.WriteFile(tmp, fmt.Appendf(nil, "memo %d", i), SecretMode); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, filepath.Join(cache, "records")); err != nil {
					t.Fatal(err)
				}
			}
			w.write(MemoDir+"/sub/other", "x")
			if err := os.RemoveAll(cache); err != nil {
				t.Fatal(err)
			}
			w.silent("writes under run/cache/", before)
			select {
			case <-feed.C:
				t.Errorf("writes under run/cache/ signalled WatchChanges: %+v", feed.Take())
			default:
			}
			b, err := os.ReadFile(filepath.Join(w.root, ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			w.write(ConfigFile, string(b)+"# edited\n")
			got := (&feedWatched{watched: w, f: feed}).until("p2ptls.toml edited", told(ConfigFile))
			if !slices.Equal(got.Names, []string{ConfigFile}) {
				t.Errorf("p2ptls.toml edited told %q", got.Names)
			}
		})
	}
}

// TestWatchFirstScanInBackground: with fsnotify the first restat of every
// record waits for the first full poll (firstScanDelay polls); a record changed or removed
// before it is told (the hub does not know yet what was there), and the
// first scan tells no record that was there before Watch began.
func TestWatchFirstScanInBackground(t *testing.T) {
	watchPoll = 100 * time.Millisecond
	t.Cleanup(func() { watchPoll = time.Second })
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	cfg := &Config{SchemaVersion: SchemaVersion, Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:8443"}}}
	for i := range 2000 {
		cfg.Mappings = append(cfg.Mappings, Mapping{ID: fmt.Sprintf("m%04d", i), Listener: "web", Hosts: []string{fmt.Sprintf("m%04d.example.com", i)}, Source: SourceManual})
	}
	if err := SaveConfig(context.Background(), d, cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * firstScanSlack) // the records are not recent
	ctx, cancel := context.WithCancel(context.Background())
	f := d.WatchChanges(ctx)
	t.Cleanup(func() {
		cancel()
		for range f.C {
		}
	})
	w := &feedWatched{watched: &watched{t: t, d: d, root: root}, f: f}
	// At once, before the first scan.
	w.write("mappings/m1999.toml", "id = 'm1999'\n")
	if err := os.Remove(filepath.Join(root, "mappings", "m1998.toml")); err != nil {
		t.Fatal(err)
	}
	w.until("a record edited and one removed as the watch began", told("mappings/m1999.toml", "mappings/m1998.toml"))
	// Several full polls later: whatever the first scan told.
	time.Sleep(2 * firstScanDelay * watchPoll)
	got := f.Take()
	for _, n := range got.Names {
		if n != "mappings/m1999.toml" && n != "mappings/m1998.toml" {
			t.Errorf("the first scan told %q, which did not change", n)
		}
	}
	if got.Full {
		t.Error("the first scan told Full")
	}
	w.write("mappings/m0000.toml", "id = 'm0000'\n")
	w.until("a record edited after the first scan", told("mappings/m0000.toml"))
}

// TestStatAllSince: a first scan in the background names only the records
// changed since it began (and a little before), never p2ptls.toml, whose
// stat the hub takes itself.
func TestStatAllSince(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(root, RecordsDir), DirMode); err != nil {
		t.Fatal(err)
	}
	write := func(rel string) {
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(rel)), []byte(rel), SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{ConfigFile, "mappings/old.toml", "mappings/edited.toml"} {
		write(rel)
	}
	time.Sleep(3 * firstScanSlack)
	since := time.Now().Add(-firstScanSlack).UnixNano()
	write("mappings/edited.toml")
	write("mappings/new.toml")
	write(ConfigFile)
	seed := maphash.MakeSeed()
	r := statAll(context.Background(), root, seed, seenSet{}, since)
	if r.err != nil {
		t.Fatal(r.err)
	}
	slices.Sort(r.names)
	if want := []string{"mappings/edited.toml", "mappings/new.toml"}; !slices.Equal(r.names, want) {
		t.Errorf("named %q, want %q", r.names, want)
	}
	if r.seen.len() != 3 {
		t.Errorf("saw %d files, want the 3 records", r.seen.len())
	}
	if _, ok := r.seen.get(maphash.String(seed, ConfigFile)); ok {
		t.Error("the first scan took p2ptls.toml's stat, which the hub took before")
	}
}

// TestWatchMergeFirstScan: the first background scan's result becomes
// what the hub saw, keeps the hub's own stat of p2ptls.toml and of what
// it restatted meanwhile, and tells only the recent names it found (all
// of them past revNamesMax); a failure is kept for the next scan to
// report, not signalled.
func TestWatchMergeFirstScan(t *testing.T) {
	many := make([]string, revNamesMax+1)
	for i := range many {
		many[i] = fmt.Sprintf("mappings/m%d.toml", i)
	}
	tests := []struct {
		name    string
		recent  []string
		err     error
		want    Changed
		lastErr bool
	}{
		{"nothing recent", nil, nil, Changed{}, false},
		{"recent records", []string{"mappings/a.toml"}, nil, Changed{Names: []string{"mappings/a.toml"}}, false},
		{"too many recent", many, nil, Changed{Full: true}, false},
		{"unreadable", nil, os.ErrPermission, Changed{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &hub{seed: maphash.MakeSeed(), during: map[uint64]struct{}{}, subs: map[*Feed]struct{}{}, gen: 1, scanning: true, since: 1}
			key := func(n string) uint64 { return maphash.String(h.seed, n) }
			f := newFeed(true)
			h.subs[f] = struct{}{}
			h.seen.set(key(ConfigFile), 5)
			h.seen.set(key("mappings/b.toml"), 7)
			h.during[key("mappings/b.toml")] = struct{}{}
			r := scanResult{seen: makeSeen([]seenKV{{key("mappings/b.toml"), 1}, {key("mappings/c.toml"), 2}}), gen: 1, initial: true, err: tc.err}
			for _, n := range tc.recent {
				r.names, r.keys = append(r.names, n), append(r.keys, key(n))
			}
			h.merge(r)
			if got := f.Take(); got.Full != tc.want.Full || !slices.Equal(got.Names, tc.want.Names) {
				t.Errorf("delivered %+v, want %+v", got, tc.want)
			}
			if (h.lastErr != "") != tc.lastErr {
				t.Errorf("lastErr %q", h.lastErr)
			}
			if (h.since == 0) != (tc.err == nil) {
				t.Errorf("since = %d after the first scan (error %v): a scan that worked is the baseline, one that failed is not", h.since, tc.err)
			}
			if tc.err == nil {
				if seenAt(h.seen, key(ConfigFile)) != 5 || seenAt(h.seen, key("mappings/b.toml")) != 7 || seenAt(h.seen, key("mappings/c.toml")) != 2 {
					t.Errorf("seen after the first scan: %v", h.seen)
				}
			}
			if h.scanning {
				t.Error("merge left the scan running")
			}
		})
	}
}

// TestWatchFullWhenRecordsSwappedBeforeFirstScan: a records directory
// swapped in before the first scan holds records older than the watch;
// with nothing to compare them with, the watch tells Full.
func TestWatchFullWhenRecordsSwappedBeforeFirstScan(t *testing.T) {
	watchPoll = time.Hour // fsnotify alone: no first scan
	t.Cleanup(func() { watchPoll = time.Second })
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	cfg := &Config{SchemaVersion: SchemaVersion, Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:8443"}},
		Mappings: []Mapping{{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceManual}}}
	if err := SaveConfig(context.Background(), d, cfg); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(filepath.Dir(root), "other-mappings")
	if err := os.Mkdir(other, DirMode); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "b.toml"), []byte("id = 'b'\nlistener = 'web'\nhosts = ['b.example.com']\nsource = 'manual'\n"), SecretMode); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * firstScanSlack) // b.toml is older than the watch
	ctx, cancel := context.WithCancel(context.Background())
	f := d.WatchChanges(ctx)
	t.Cleanup(func() {
		cancel()
		for range f.C {
		}
	})
	w := &feedWatched{watched: &watched{t: t, d: d, root: root}, f: f}
	if err := os.Rename(filepath.Join(root, RecordsDir), filepath.Join(filepath.Dir(root), "old-mappings")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, filepath.Join(root, RecordsDir)); err != nil {
		t.Fatal(err)
	}
	w.until("the records directory swapped", full)
}
