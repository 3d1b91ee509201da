package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cached is a state directory of a few mappings and a cache of it.
type cached struct {
	t     *testing.T
	root  string
	d     *Dir
	cache *ConfigCache
}

func newCached(t *testing.T) *cached {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	base := validBase(t, 8)
	base.loaded = nil
	if err := SaveConfig(context.Background(), d, base); err != nil {
		t.Fatal(err)
	}
	// A change under the lock, for a revision log (SaveConfig writes none).
	if err := Update(context.Background(), d, "test", func(tx *Tx) error {
		m, _ := tx.Config.Mapping("m007")
		m.Upstream = "http://127.0.0.1:9007"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return &cached{t: t, root: root, d: d, cache: NewConfigCache(t.Context(), d)}
}

func (c *cached) load() *Config {
	c.t.Helper()
	cfg, err := c.cache.Load(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

// changeM003 changes m003's upstream under the lock.
func (c *cached) changeM003() {
	if err := Update(context.Background(), c.d, "test", func(tx *Tx) error {
		m, _ := tx.Config.Mapping("m003")
		m.Upstream = "http://127.0.0.1:9003"
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

// editM003 changes m003's upstream by hand, as an editor writes it.
func (c *cached) editM003() {
	c.write(RecordName("m003"), "id = \"m003\"\nlistener = \"api\"\nhosts = [\"m003.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://127.0.0.1:9033\"\n")
}

func (c *cached) write(rel, content string) {
	c.t.Helper()
	// In place, as an editor may: no rename, no new p2ptls.rev.
	if err := os.WriteFile(filepath.Join(c.root, filepath.FromSlash(rel)), []byte(content), SecretMode); err != nil {
		c.t.Fatal(err)
	}
}

// eventually loads until ok accepts the config (or the error), within
// signalWait: what the feed tells arrives after its delay.
func (c *cached) eventually(what string, ok func(*Config, error) bool) {
	c.t.Helper()
	deadline := time.Now().Add(signalWait)
	for {
		cfg, err := c.cache.Load(context.Background())
		if ok(cfg, err) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not seen within %v (last: %v)", what, signalWait, err)
		}
		time.Sleep(5 * time.Millisecond) // pacing, not an assertion
	}
}

func upstreamOf(cfg *Config, id string) string {
	if m, ok := cfg.Mapping(id); ok {
		return m.Upstream
	}
	return "(no mapping " + id + ")"
}

// A change under the lock, by this process's Dir or by another one (the
// CLI), and a hand edit of p2ptls.toml are seen by the very next Load;
// until something changes, Load returns the config it kept.
func TestConfigCacheSeesChangesAtOnce(t *testing.T) {
	update := func(fn func(*Tx) error) func(*cached, Store) {
		return func(c *cached, s Store) {
			if err := Update(context.Background(), s, "test", fn); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		desc   string
		change func(c *cached, s Store)
		seen   func(*Config) bool
	}{
		{"a mapping added", update(func(tx *Tx) error {
			tx.Config.Mappings = append(tx.Config.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.com"}, Source: SourceSelfSigned})
			return nil
		}), func(cfg *Config) bool { _, ok := cfg.Mapping("new"); return ok }},
		{"a mapping changed", update(func(tx *Tx) error {
			m, _ := tx.Config.Mapping("m003")
			m.Upstream = "http://127.0.0.1:9000"
			return nil
		}), func(cfg *Config) bool { return upstreamOf(cfg, "m003") == "http://127.0.0.1:9000" }},
		{"a mapping removed", update(func(tx *Tx) error {
			tx.Config.Mappings = slices.DeleteFunc(tx.Config.Mappings, func(m Mapping) bool { return m.ID == "m004" })
			return nil
		}), func(cfg *Config) bool { _, ok := cfg.Mapping("m004"); return !ok }},
		{"a listener added", update(func(tx *Tx) error {
			_, err := tx.Config.AddListener(Listener{Name: "extra", Addr: "127.0.0.1:10443"})
			return err
		}), func(cfg *Config) bool { _, ok := cfg.Listener("extra"); return ok }},
		{"p2ptls.toml edited by hand", func(c *cached, _ Store) {
			b, err := os.ReadFile(filepath.Join(c.root, ConfigFile))
			if err != nil {
				c.t.Fatal(err)
			}
			c.write(ConfigFile, string(b)+"\n[[listeners]]\nname = \"hand\"\naddr = \"127.0.0.1:11443\"\n")
		}, func(cfg *Config) bool { _, ok := cfg.Listener("hand"); return ok }},
	} {
		for _, writer := range []string{"this Dir", "another Dir"} {
			t.Run(tc.desc+" by "+writer, func(t *testing.T) {
				c := newCached(t)
				first := c.load()
				if again := c.load(); again != first {
					t.Fatal("a second Load with nothing changed loaded again")
				}
				if tc.seen(first) {
					t.Fatal("the change is there before it was made")
				}
				var s Store = c.d
				if writer == "another Dir" {
					s = OpenDir(c.root, 5*time.Second)
				}
				tc.change(c, s)
				if got := c.load(); !tc.seen(got) {
					t.Fatal("the next Load does not show the change")
				}
			})
		}
	}
}

// A hand edit of a record, which writes no p2ptls.rev, is seen once the
// feed signals it, with fsnotify and with the poll alone.
func TestConfigCacheSeesHandEditedRecords(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			if mode.poll {
				forcePoll(t)
			}
			c := newCached(t)
			c.load()
			c.write(RecordName("m005"), "id = \"m005\"\nlistener = \"api\"\nhosts = [\"m005.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://127.0.0.1:9005\"\n")
			c.eventually("an edited record", func(cfg *Config, err error) bool {
				return err == nil && upstreamOf(cfg, "m005") == "http://127.0.0.1:9005"
			})
			c.write(RecordName("m005"), "id = \"m005\"\nhosts = [\n")
			c.eventually("a broken record", func(_ *Config, err error) bool {
				var fe *ConfigFileError
				return errors.As(err, &fe)
			})
			if err := os.Remove(filepath.Join(c.root, RecordName("m005"))); err != nil {
				t.Fatal(err)
			}
			c.eventually("a removed record", func(cfg *Config, err error) bool {
				_, ok := cfg.Mapping("m005")
				return err == nil && !ok
			})
		})
	}
}

// A p2ptls.toml that does not load is an error at every Load, not a
// config kept from before nor an error kept; fixed, it loads.
func TestConfigCacheBrokenConfigFile(t *testing.T) {
	c := newCached(t)
	good, err := os.ReadFile(filepath.Join(c.root, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	c.load()
	c.write(ConfigFile, "schema_version = 2\n[[listeners]\n")
	for range 2 {
		var fe *ConfigFileError
		if _, err := c.cache.Load(context.Background()); !errors.As(err, &fe) {
			t.Fatalf("Load of a broken p2ptls.toml: %v, want a ConfigFileError", err)
		}
	}
	c.write(ConfigFile, string(good)+"\n[[listeners]]\nname = \"fixed\"\naddr = \"127.0.0.1:12443\"\n")
	if _, ok := c.load().Listener("fixed"); !ok {
		t.Fatal("the fixed p2ptls.toml is not what Load returns")
	}
}

// A restore puts another directory in the root's place (as Dir.Replace
// does): the next Load reads it.
func TestConfigCacheFollowsRestoredDirectory(t *testing.T) {
	c := newCached(t)
	c.load()
	staged := c.root + ".restore-tmp-1"
	if err := os.MkdirAll(staged, DirMode); err != nil {
		t.Fatal(err)
	}
	restored := "schema_version = 2\n[[listeners]]\nname = \"restored\"\naddr = \"127.0.0.1:13443\"\n"
	if err := os.WriteFile(filepath.Join(staged, ConfigFile), []byte(restored), SecretMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(c.root, c.root+".pre-restore-1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, c.root); err != nil {
		t.Fatal(err)
	}
	got := c.load()
	if _, ok := got.Listener("restored"); !ok || len(got.Mappings) != 0 {
		t.Fatalf("after the restore: listeners %v, %d mappings", got.Listeners, len(got.Mappings))
	}
}

// countingStore counts the reads of p2ptls.toml, one per load; it is not
// a *Dir, so the cache takes its Revision as the token.
type countingStore struct {
	Store
	loads atomic.Int64
}

func (s *countingStore) Read(ctx context.Context, name string) ([]byte, error) {
	if name == ConfigFile {
		s.loads.Add(1)
	}
	return s.Store.Read(ctx, name)
}

// Many Loads at once make one load and share its config; Loads racing a
// writer get a config every time and, after the last change, that one.
// Run with -race.
func TestConfigCacheConcurrentLoads(t *testing.T) {
	for _, store := range []string{"Dir", "another store"} {
		t.Run(store, func(t *testing.T) {
			c := newCached(t)
			counted := &countingStore{Store: c.d}
			var s Store = c.d
			if store == "another store" {
				s = counted
				c.cache = NewConfigCache(t.Context(), s)
			}
			const readers = 16
			var wg sync.WaitGroup
			got := make([]*Config, readers)
			for i := range readers {
				wg.Go(func() {
					cfg, err := c.cache.Load(context.Background())
					if err != nil {
						t.Error(err)
					}
					got[i] = cfg
				})
			}
			wg.Wait()
			for i := range got {
				if got[i] != got[0] {
					t.Fatal("Loads at the same state returned different configs")
				}
			}
			if n := counted.loads.Load(); store == "another store" && n != 1 {
				t.Fatalf("%d loads for %d Loads at the same state, want 1", n, readers)
			}
			// Readers during changes.
			const changes = 10
			done := make(chan struct{})
			for range readers / 2 {
				wg.Go(func() {
					for {
						select {
						case <-done:
							return
						default:
						}
						cfg, err := c.cache.Load(context.Background())
						if err != nil || cfg == nil || len(cfg.Mappings) == 0 {
							t.Errorf("Load during changes: %v", err)
							return
						}
					}
				})
			}
			for i := range changes {
				err := Update(context.Background(), s, "test", func(tx *Tx) error {
					m, _ := tx.Config.Mapping("m003")
					m.Upstream = "http://127.0.0.1:" + string(rune('0'+i)) + "000"
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			close(done)
			wg.Wait()
			if got := upstreamOf(c.load(), "m003"); got != "http://127.0.0.1:9000" {
				t.Fatalf("after the last change: upstream %q", got)
			}
		})
	}
}

// Once its context ends the cache keeps nothing (no feed tells it of hand
// edits any more) and loads every time.
func TestConfigCacheEnded(t *testing.T) {
	c := newCached(t)
	ctx, cancel := context.WithCancel(context.Background())
	c.cache = NewConfigCache(ctx, c.d)
	c.load()
	cancel()
	c.write(RecordName("m006"), "id = \"m006\"\nlistener = \"web\"\nhosts = [\"m006.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://127.0.0.1:9006\"\n")
	if got := upstreamOf(c.load(), "m006"); got != "http://127.0.0.1:9006" {
		t.Fatalf("after the end: upstream %q, want the edit", got)
	}
}

// What the feed tells is held by the kept config when every changed
// record is what the config has: a locked change's records, signalled
// after the Load that its p2ptls.rev made load again, do not load 100k
// records a second time; a hand edit, or anything it cannot tell, does.
func TestConfigCacheHolds(t *testing.T) {
	m003 := RecordName("m003")
	for _, tc := range []struct {
		desc  string
		keep  bool // a config is kept (Load before the change)
		after func(c *cached)
		ch    Changed
		want  bool
	}{
		{"a locked change, loaded since", true, func(c *cached) {
			c.changeM003()
			c.load()
		}, Changed{Names: []string{m003}}, true},
		{"a locked change, not loaded since", true, func(c *cached) {
			c.changeM003()
		}, Changed{Names: []string{m003}}, true},
		{"a hand edit after a locked change, loaded between", true, func(c *cached) {
			c.changeM003()
			c.load()
			c.editM003()
		}, Changed{Names: []string{m003}}, false},
		{"a record removed under the lock, loaded since", true, func(c *cached) {
			if err := Update(context.Background(), c.d, "test", func(tx *Tx) error {
				tx.Config.Mappings = slices.DeleteFunc(tx.Config.Mappings, func(m Mapping) bool { return m.ID == "m003" })
				return nil
			}); err != nil {
				c.t.Fatal(err)
			}
			c.load()
		}, Changed{Names: []string{m003}}, true},
		{"a record edited by hand", true, func(c *cached) {
			c.editM003()
		}, Changed{Names: []string{m003}}, false},
		{"a record broken by hand", true, func(c *cached) { c.write(m003, "id = \"m003\"\nhosts = [\n") },
			Changed{Names: []string{m003}}, false},
		{"a record removed by hand", true, func(c *cached) {
			if err := os.Remove(filepath.Join(c.root, m003)); err != nil {
				c.t.Fatal(err)
			}
		}, Changed{Names: []string{m003}}, false},
		{"a record named that is not there and was not", true, nil, Changed{Names: []string{RecordName("never")}}, true},
		{"an editor's file beside the records", true, func(c *cached) { c.write(RecordsDir+"/.m003.toml.swp", "junk") },
			Changed{Names: []string{RecordsDir + "/.m003.toml.swp"}}, true},
		{"p2ptls.toml, which the token covers", true, nil, Changed{Names: []string{ConfigFile}}, true},
		{"anything", true, nil, Changed{Full: true}, false},
		{"nothing kept yet", false, func(c *cached) { c.write(m003, "id = \"m003\"\nhosts = [\n") },
			Changed{Names: []string{m003}}, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newCached(t)
			// Without a feed of its own: the test hands holds what a
			// feed would have told.
			c.cache = &ConfigCache{s: c.d, ctx: t.Context()}
			if tc.keep {
				c.load()
			}
			if tc.after != nil {
				tc.after(c)
			}
			if got := c.cache.holds(c.d, tc.ch); got != tc.want {
				t.Fatalf("holds = %v, want %v", got, tc.want)
			}
		})
	}
}

// A load that runs while the feed tells of a change may have read the
// record before or after it: holds waits for it and compares what it
// kept with the record as it is now.
func TestConfigCacheHoldsWaitsForTheLoadRunning(t *testing.T) {
	m003 := RecordName("m003")
	edited := "id = \"m003\"\nlistener = \"api\"\nhosts = [\"m003.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://127.0.0.1:9033\"\n"
	for _, tc := range []struct {
		desc      string
		readAfter bool // the load running read the edited record
		want      bool
	}{
		{"it read the edit", true, true},
		{"it read what was there before", false, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newCached(t)
			c.cache = &ConfigCache{s: c.d, ctx: t.Context()}
			before, err := LoadConfig(context.Background(), c.d)
			if err != nil {
				t.Fatal(err)
			}
			c.write(m003, edited)
			read := before
			if tc.readAfter {
				if read, err = LoadConfig(context.Background(), c.d); err != nil {
					t.Fatal(err)
				}
			}
			// What was kept before the load began: stale for the edit.
			l := &configLoad{done: make(chan struct{})}
			c.cache.flight, c.cache.kept = l, &keptConfig{cfg: before}
			got := make(chan bool, 1)
			go func() { got <- c.cache.holds(c.d, Changed{Names: []string{m003}}) }()
			// Time for holds to reach the load, so that one that compared
			// at once would compare the stale config; holds is right
			// however late it gets there.
			time.Sleep(20 * time.Millisecond)
			// As load ends it: kept, then done.
			c.cache.mu.Lock()
			c.cache.flight, c.cache.kept = nil, &keptConfig{cfg: read}
			c.cache.mu.Unlock()
			close(l.done)
			if h := <-got; h != tc.want {
				t.Fatalf("holds = %v, want %v", h, tc.want)
			}
		})
	}
}

// A Load after changes of records under the lock reads only those
// records, and gives what LoadConfig gives; a change of no record keeps
// the config as it is; anything else loads the whole state.
func TestConfigCacheLoadsOnlyWhatChanged(t *testing.T) {
	update := func(fn func(*Tx) error) func(*cached) {
		return func(c *cached) {
			if err := Update(context.Background(), c.d, "test", fn); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		desc   string
		change func(*cached)
		names  []string // what the Load after reads; nil: everything
	}{
		{"a mapping changed", update(func(tx *Tx) error {
			m, _ := tx.Config.Mapping("m003")
			m.Upstream = "http://127.0.0.1:9000"
			return nil
		}), []string{RecordName("m003")}},
		{"two changes: a mapping added, another removed", func(c *cached) {
			update(func(tx *Tx) error {
				tx.Config.Mappings = append(tx.Config.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"New.Example.com"}, Source: SourceSelfSigned})
				return nil
			})(c)
			update(func(tx *Tx) error {
				tx.Config.Mappings = slices.DeleteFunc(tx.Config.Mappings, func(m Mapping) bool { return m.ID == "m004" })
				return nil
			})(c)
		}, []string{RecordName("new"), RecordName("m004")}},
		{"a certificate file, no record", update(func(tx *Tx) error {
			return tx.Write(context.Background(), "certs/public/m003/cert.pem", []byte("x"), SecretMode)
		}), []string{}},
		{"a listener added (p2ptls.toml)", update(func(tx *Tx) error {
			_, err := tx.Config.AddListener(Listener{Name: "extra", Addr: "127.0.0.1:10443"})
			return err
		}), nil},
		{"a record edited by hand, told by the feed", func(c *cached) {
			c.write(RecordName("m005"), "id = \"m005\"\nlistener = \"api\"\nhosts = [\"m005.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://127.0.0.1:9005\"\n")
			c.cache.signals.Add(1) // as the feed would
		}, nil},
		{"the revision log started again", func(c *cached) {
			if err := os.Remove(filepath.Join(c.root, RevisionFile)); err != nil {
				c.t.Fatal(err)
			}
			update(func(tx *Tx) error {
				m, _ := tx.Config.Mapping("m003")
				m.Upstream = "http://127.0.0.1:9000"
				return nil
			})(c)
		}, nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newCached(t)
			// No feed: the test says what it tells.
			c.cache = &ConfigCache{s: c.d, ctx: t.Context()}
			before := c.load()
			was := c.cache.kept.key
			tc.change(c)
			now, ok := c.cache.key(context.Background())
			if !ok {
				t.Fatal("no key")
			}
			names, part := changedRecords(was, now)
			slices.Sort(names)
			want := slices.Clone(tc.names)
			slices.Sort(want)
			if part != (tc.names != nil) || !slices.Equal(names, want) {
				t.Fatalf("changedRecords = %q, %v; want %q, %v", names, part, want, tc.names != nil)
			}
			got := c.load()
			full, err := LoadConfig(context.Background(), c.d)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(exported(got), exported(full)) {
				t.Errorf("Load after the change:\n%+v\nLoadConfig:\n%+v", exported(got), exported(full))
			}
			if same := got == before; same != (tc.names != nil && len(tc.names) == 0) {
				t.Errorf("the kept config returned again: %v", same)
			}
		})
	}
}

// exported is what a caller sees of c.
func exported(c *Config) Config {
	return Config{SchemaVersion: c.SchemaVersion, ACME: c.ACME, Listeners: c.Listeners, Mappings: c.Mappings, DNSCredentials: c.DNSCredentials}
}
