package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// fixture copies testdata/<name> into a new state directory.
func fixture(t *testing.T, name string) *Dir {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if de.IsDir() {
			return os.MkdirAll(filepath.Join(root, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(root, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return OpenDir(root, 2*time.Second)
}

// stateFiles lists every file under d's root with its content, but the lock's
// own files.
func stateFiles(t *testing.T, d *Dir) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(d.Root(), func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(d.Root(), p)
		rel = filepath.ToSlash(rel)
		if rel == LockFile || rel == RevisionFile || strings.HasPrefix(rel, MemoDir+"/") {
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustLoad(t *testing.T, s Store) *Config {
	t.Helper()
	cfg, err := LoadConfig(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// desired is the desired state of cfg, without what it was loaded from and
// with mappings in the order of their ids.
func desired(cfg *Config) *Config {
	out := normalNil(cfg)
	out.SchemaVersion = 0
	sortMappings(out.Mappings)
	return out
}

func TestLoadV1AndV2Alike(t *testing.T) {
	v1, v2 := mustLoad(t, fixture(t, "v1")), mustLoad(t, fixture(t, "v2"))
	if v1.SchemaVersion != 1 || v2.SchemaVersion != 2 {
		t.Errorf("schema versions %d, %d", v1.SchemaVersion, v2.SchemaVersion)
	}
	if got, want := desired(v2), desired(v1); !reflect.DeepEqual(got, want) {
		t.Errorf("v2 loads as\n%+v\nv1 as\n%+v", got, want)
	}
	// Records come in the order of their ids; a version 1 file in its own.
	var ids []string
	for _, m := range v2.Mappings {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"api", "web", "wild"}) || v1.Mappings[0].ID != "web" {
		t.Errorf("order: v2 %q, v1 starts with %q", ids, v1.Mappings[0].ID)
	}
	if m, _ := v2.Mapping("web"); m.Hosts[0] != "www.example.com" {
		t.Errorf("a record's hosts are not normalised: %q", m.Hosts)
	}
}

// TestLoadIgnoresEditorFiles: only ID.toml in mappings/ is a record; what
// editors and atomic writes leave beside it is not read, and a .toml that
// is not named after an id is refused rather than left out.
func TestLoadIgnoresEditorFiles(t *testing.T) {
	ctx := context.Background()
	want := desired(mustLoad(t, fixture(t, "v2")))
	for _, name := range []string{".web.toml.swp", ".web.toml.swo", ".#web.toml", "#web.toml#", "web.toml~", "web.toml.bak", ".web.toml.tmp-123", "README", ".hidden.toml"} {
		t.Run(name, func(t *testing.T) {
			d := fixture(t, "v2")
			if err := d.Write(ctx, RecordsDir+"/"+name, []byte("not toml at all = = ="), SecretMode); err != nil {
				t.Fatal(err)
			}
			if got := desired(mustLoad(t, d)); !reflect.DeepEqual(got, want) {
				t.Errorf("with %s: %+v", name, got)
			}
		})
	}
}

// TestHandEditErrors: every error of a hand edit names its file, line and
// field, is bad input, and is a *ConfigFileError (the API answers 500).
func TestHandEditErrors(t *testing.T) {
	ctx := context.Background()
	const web = "id = \"web\"\nlistener = \"web\"\nhosts = [\"www.example.com\"]\nsource = \"self-signed\"\n"
	tests := []struct {
		desc    string
		name    string // written by hand; "" deletes nothing and writes nothing
		content string
		file    string // the file the error names
		want    []string
	}{
		{"upstream with a password", RecordName("web"), web + "upstream = \"http://u:hunter2@127.0.0.1\"\n",
			"mappings/web.toml", []string{`line 5, field "upstream"`, "user name or password"}},
		{"unknown field", RecordName("web"), web + "port = 443\n",
			"mappings/web.toml", []string{`line 5: unknown field "port"`}},
		{"wrong type", RecordName("web"), "id = \"web\"\ndays = \"thirty\"\n",
			"mappings/web.toml", []string{"line 2", `field "days"`}},
		{"syntax error", RecordName("web"), "id = \"web\nlistener = \"web\"\n",
			"mappings/web.toml", []string{"line 1"}},
		{"id is not the file name", RecordName("web"), strings.Replace(web, `id = "web"`, `id = "other"`, 1),
			"mappings/web.toml", []string{`line 1, field "id"`, `id "other" is not the file's name "web"`}},
		{"id missing", RecordName("web"), strings.Replace(web, "id = \"web\"\n", "", 1),
			"mappings/web.toml", []string{`field "id" is missing`}},
		{"missing listener", RecordName("web"), strings.Replace(web, `listener = "web"`, `listener = "nope"`, 1),
			"mappings/web.toml", []string{`line 2, field "listener"`, `listener "nope" does not exist`}},
		{"missing DNS credential", RecordName("zz"), "id = \"zz\"\nlistener = \"web\"\nhosts = [\"z.example.com\"]\nsource = \"acme\"\nchallenge = \"dns-01\"\ndns_credential = \"nope\"\n",
			"mappings/zz.toml", []string{`line 6, field "dns_credential"`, `DNS credential "nope" does not exist`}},
		{"host taken by another record", RecordName("zz"), "id = \"zz\"\nlistener = \"web\"\n\nhosts = [\"Example.com\"]\nsource = \"manual\"\n",
			"mappings/zz.toml", []string{`line 4, field "hosts"`, `host "example.com" is already mapped on listener "web" by mapping "web"`}},
		{"IP host with DNS-01", RecordName("zz"), "id = \"zz\"\nlistener = \"web\"\nhosts = [\"127.0.0.1\"]\nsource = \"acme\"\nchallenge = \"dns-01\"\ndns_credential = \"nope\"\n",
			"mappings/zz.toml", []string{`line 5, field "challenge"`, "IP address 127.0.0.1 cannot be validated with DNS-01"}},
		{"IP host with a zone", RecordName("zz"), "id = \"zz\"\nlistener = \"web\"\nhosts = [\"fe80::1%eth0\"]\nsource = \"self-signed\"\n",
			"mappings/zz.toml", []string{`line 3, field "hosts"`, `has the zone "%eth0"`}},
		{"IP host twice in two spellings", RecordName("zz"), "id = \"zz\"\nlistener = \"web\"\nhosts = [\"::1\", \"[::0001]\"]\nsource = \"self-signed\"\n",
			"mappings/zz.toml", []string{`line 3, field "hosts"`, `lists host "::1" twice`}},
		{"no hosts", RecordName("zz"), "id = \"zz\"\nlistener = \"web\"\nsource = \"manual\"\n",
			"mappings/zz.toml", []string{`field "hosts" (not set)`, "has no hosts"}},
		{"file name not an id", RecordsDir + "/Web.toml", web,
			"mappings/Web.toml", []string{"the file name is not a mapping id", `"Web" is invalid`}},
		{"mappings in a version 2 p2ptls.toml", ConfigFile, "schema_version = 2\n[[listeners]]\nname = \"web\"\naddr = \":443\"\n\n[[mappings]]\nid = \"m\"\n",
			"p2ptls.toml", []string{"line 6", "keeps mappings in mappings/<id>.toml"}},
		{"listener error in p2ptls.toml", ConfigFile, "schema_version = 2\n[[listeners]]\nname = \"web\"\naddr = \":0\"\n",
			"p2ptls.toml", []string{"line 2", "listeners[0]"}},
		{"newer schema", ConfigFile, "schema_version = 3\n",
			"p2ptls.toml", []string{"schema_version 3 is not supported by this p2ptls, which reads schema_version 1 and 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d := fixture(t, "v2")
			if err := d.Write(ctx, tc.name, []byte(tc.content), SecretMode); err != nil {
				t.Fatal(err)
			}
			before := stateFiles(t, d)
			_, err := LoadConfig(ctx, d)
			t.Log(err)
			var cfe *ConfigFileError
			if !errors.As(err, &cfe) || cfe.Path != filepath.Join(d.Root(), filepath.FromSlash(tc.file)) {
				t.Fatalf("LoadConfig = %v, want a *ConfigFileError naming %s", err, tc.file)
			}
			if !strings.HasPrefix(err.Error(), cfe.Path+": ") || fault.KindOf(err) != fault.Invalid {
				t.Errorf("error %q (kind %v)", err, fault.KindOf(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %v", err)
			}
			// A change refuses to run on it, and leaves every file as it is.
			if err := Update(ctx, d, "test", func(tx *Tx) error { return nil }); !errors.As(err, &cfe) {
				t.Errorf("Update = %v, want the load error", err)
			}
			if after := stateFiles(t, d); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused Update changed files")
			}
		})
	}
}

// recorder is a store that records every Apply (and refuses single
// writes of the desired state, which must go through Apply).
type recorder struct {
	*Dir
	mu      sync.Mutex
	applies []Change
}

func (r *recorder) Apply(ctx context.Context, c Change) error {
	r.mu.Lock()
	r.applies = append(r.applies, c)
	r.mu.Unlock()
	return r.Dir.Apply(ctx, c)
}

func (r *recorder) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	if name == ConfigFile || strings.HasPrefix(name, RecordsDir+"/") {
		return errors.New("the desired state written outside a change: " + name)
	}
	return r.Dir.Write(ctx, name, data, perm)
}

// names lists what c writes and deletes.
func names(c Change) (writes, deletes []string) {
	for _, w := range c.Writes {
		writes = append(writes, w.Name)
	}
	return writes, c.Deletes
}

// TestUpdateWritesOnlyWhatChanged: after migration, a change writes the
// record of each mapping it adds or changes, deletes the record of each
// it removes, and writes p2ptls.toml only when its own part changed.
func TestUpdateWritesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	newMapping := Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.com"}, Source: SourceSelfSigned}
	tests := []struct {
		desc            string
		fn              func(c *Config)
		writes, deletes []string
	}{
		{"nothing", func(c *Config) {}, nil, nil},
		{"add a mapping", func(c *Config) { c.Mappings = append(c.Mappings, newMapping) }, []string{"mappings/new.toml"}, nil},
		{"remove a mapping", func(c *Config) {
			c.Mappings = slices.DeleteFunc(c.Mappings, func(m Mapping) bool { return m.ID == "api" })
		}, nil, []string{"mappings/api.toml"}},
		{"change a mapping", func(c *Config) { m, _ := c.Mapping("wild"); m.KeyType = "ec384" }, []string{"mappings/wild.toml"}, nil},
		{"change a mapping's host in place", func(c *Config) { m, _ := c.Mapping("web"); m.Hosts[1] = "example.net" }, []string{"mappings/web.toml"}, nil},
		{"change a listener", func(c *Config) { c.Listeners[0].Fallback = FallbackReject }, []string{"p2ptls.toml"}, nil},
		{"spelling that normalises to the same", func(c *Config) { m, _ := c.Mapping("web"); m.Hosts[0] = "WWW.EXAMPLE.COM." }, nil, nil},
		{"add a listener and a mapping on it: the listener first", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "more", Addr: ":8444"})
			m := newMapping
			m.Listener = "more"
			c.Mappings = append(c.Mappings, m)
		}, []string{"p2ptls.toml", "mappings/new.toml"}, nil},
		{"replace one by another", func(c *Config) {
			c.Mappings = slices.DeleteFunc(c.Mappings, func(m Mapping) bool { return m.ID == "api" })
			c.Mappings = append(c.Mappings, newMapping)
		}, []string{"mappings/new.toml"}, []string{"mappings/api.toml"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := &recorder{Dir: fixture(t, "v2")}
			before := stateFiles(t, r.Dir)
			if err := Update(ctx, r, "test", func(tx *Tx) error { tc.fn(tx.Config); return nil }); err != nil {
				t.Fatal(err)
			}
			if tc.writes == nil && tc.deletes == nil {
				if len(r.applies) != 0 {
					t.Errorf("a change of nothing applied %+v", r.applies)
				}
				if after := stateFiles(t, r.Dir); !reflect.DeepEqual(before, after) {
					t.Error("a change of nothing changed files")
				}
				return
			}
			if len(r.applies) != 1 {
				t.Fatalf("%d applies, want 1", len(r.applies))
			}
			writes, deletes := names(r.applies[0])
			if !slices.Equal(writes, tc.writes) || !slices.Equal(deletes, tc.deletes) {
				t.Errorf("writes %q, deletes %q; want %q, %q", writes, deletes, tc.writes, tc.deletes)
			}
			after := stateFiles(t, r.Dir)
			for name, content := range before {
				if !slices.Contains(tc.writes, name) && !slices.Contains(tc.deletes, name) && after[name] != content {
					t.Errorf("%s changed", name)
				}
			}
			// What was saved loads as what the change made.
			want := mustLoad(t, fixture(t, "v2"))
			tc.fn(want)
			if err := want.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := mustLoad(t, r.Dir); !reflect.DeepEqual(desired(got), desired(want)) {
				t.Errorf("saved\n%+v\nwant\n%+v", desired(got), desired(want))
			}
		})
	}
}

// TestMigration: the first change of a schema_version 1 state keeps the
// old file byte for byte, writes a record per mapping and a version 2
// p2ptls.toml, all in one Apply; reads do not migrate.
func TestMigration(t *testing.T) {
	ctx := context.Background()
	v1, err := os.ReadFile(filepath.Join("testdata", "v1", ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc     string
		existing []string // backups there before
		backup   string   // the name the migration keeps the file under
	}{
		{"first migration", nil, BackupV1File},
		{"a backup is there", []string{BackupV1File}, "p2ptls.toml.v1.20261201T093000Z.bak"},
		{"two backups are there", []string{BackupV1File, "p2ptls.toml.v1.20261201T093000Z.bak"}, "p2ptls.toml.v1.20261201T093000Z-2.bak"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := &recorder{Dir: fixture(t, "v1")}
			for _, name := range tc.existing {
				if err := r.Dir.Write(ctx, name, []byte("an older backup "+name), SecretMode); err != nil {
					t.Fatal(err)
				}
			}
			before := stateFiles(t, r.Dir)
			want := mustLoad(t, r)
			if after := stateFiles(t, r.Dir); !reflect.DeepEqual(before, after) {
				t.Fatal("a read migrated the state")
			}
			c, _, err := want.change(ctx, r, time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Apply(ctx, c); err != nil {
				t.Fatal(err)
			}
			if len(r.applies) != 1 {
				t.Fatalf("%d applies, want 1", len(r.applies))
			}
			writes, deletes := names(r.applies[0])
			if w := []string{tc.backup, "mappings/web.toml", "mappings/api.toml", "mappings/wild.toml", ConfigFile}; !slices.Equal(writes, w) || len(deletes) != 0 {
				t.Errorf("writes %q, deletes %q; want %q", writes, deletes, w)
			}
			got, err := os.ReadFile(filepath.Join(r.Root(), tc.backup))
			if err != nil || string(got) != string(v1) {
				t.Errorf("backup %s: %v; not the version 1 file byte for byte", tc.backup, err)
			}
			if info, err := os.Stat(filepath.Join(r.Root(), tc.backup)); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("backup mode: %v, %v", info.Mode(), err)
			}
			for _, name := range tc.existing {
				if b, _ := os.ReadFile(filepath.Join(r.Root(), name)); string(b) != "an older backup "+name {
					t.Errorf("the earlier backup %s was overwritten", name)
				}
			}
			top, _ := os.ReadFile(filepath.Join(r.Root(), ConfigFile))
			if !strings.Contains(string(top), "schema_version = 2") || strings.Contains(string(top), "[[mappings]]") {
				t.Errorf("p2ptls.toml after migration:\n%s", top)
			}
			if after := mustLoad(t, r); after.SchemaVersion != 2 || !reflect.DeepEqual(desired(after), desired(want)) {
				t.Errorf("after migration\n%+v\nbefore\n%+v", desired(after), desired(want))
			}
		})
	}
}

// TestMigrationThroughUpdate: Update migrates in its one Apply, with fn's
// files, and a second Update writes only its own change.
func TestMigrationThroughUpdate(t *testing.T) {
	ctx := context.Background()
	r := &recorder{Dir: fixture(t, "v1")}
	err := Update(ctx, r, "test", func(tx *Tx) error {
		tx.Config.Mappings = append(tx.Config.Mappings, Mapping{ID: "new", Listener: "api", Hosts: []string{"new.example.com"}, Source: SourceSelfSigned})
		return tx.Write(ctx, "certs/public/new/cert.pem", []byte("c"), SecretMode)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.applies) != 1 {
		t.Fatalf("%d applies, want 1", len(r.applies))
	}
	writes, _ := names(r.applies[0])
	want := []string{"certs/public/new/cert.pem", BackupV1File, "mappings/web.toml", "mappings/api.toml", "mappings/wild.toml", "mappings/new.toml", ConfigFile}
	if !slices.Equal(writes, want) {
		t.Errorf("writes %q, want %q", writes, want)
	}
	before := stateFiles(t, r.Dir)
	r.applies = nil
	if err := Update(ctx, r, "test", func(tx *Tx) error {
		m, _ := tx.Config.Mapping("new")
		m.Days = 7
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if writes, deletes := names(r.applies[0]); !slices.Equal(writes, []string{"mappings/new.toml"}) || len(deletes) != 0 {
		t.Errorf("second update writes %q, deletes %q", writes, deletes)
	}
	after := stateFiles(t, r.Dir)
	for name := range before {
		if name != "mappings/new.toml" && before[name] != after[name] {
			t.Errorf("%s changed", name)
		}
	}
}

// TestMigrationRefusesRecordsOfAnotherState: records beside a version 1
// p2ptls.toml are not part of its state, and migrating would write over
// them: the change is refused and nothing is written.
func TestMigrationRefusesRecordsOfAnotherState(t *testing.T) {
	ctx := context.Background()
	d := fixture(t, "v1")
	if err := d.Write(ctx, RecordName("web"), []byte("id = \"web\"\n# mine\n"), SecretMode); err != nil {
		t.Fatal(err)
	}
	before := stateFiles(t, d)
	// Reads take the version 1 file as it is.
	if cfg := mustLoad(t, d); len(cfg.Mappings) != 3 {
		t.Errorf("v1 load: %d mappings", len(cfg.Mappings))
	}
	err := Update(ctx, d, "test", func(tx *Tx) error { return nil })
	if err == nil || fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), filepath.Join(d.Root(), "mappings")+" already holds web.toml") || !strings.Contains(fault.HintOf(err), "move") {
		t.Errorf("Update = %v (hint %q)", err, fault.HintOf(err))
	}
	if after := stateFiles(t, d); !reflect.DeepEqual(before, after) {
		t.Error("a refused migration changed files")
	}
}

// TestHandAddedRecord: a record created by hand is loaded, and a later
// change keeps it as written.
func TestHandAddedRecord(t *testing.T) {
	ctx := context.Background()
	d := fixture(t, "v2")
	hand := "# added by hand\nid = \"x\"\nlistener = \"api\"\nhosts = [\"X.example.com\"]\nsource = \"manual\"\n"
	if err := os.WriteFile(filepath.Join(d.Root(), "mappings", "x.toml"), []byte(hand), 0o600); err != nil {
		t.Fatal(err)
	}
	if m, ok := mustLoad(t, d).Mapping("x"); !ok || m.Hosts[0] != "x.example.com" {
		t.Fatalf("the hand-added record: %+v, %v", m, ok)
	}
	if _, err := AddListener(ctx, d, Listener{Name: "more", Addr: ":8444"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(d.Root(), "mappings", "x.toml")); string(b) != hand {
		t.Errorf("the hand-written record was rewritten:\n%s", b)
	}
}

// TestSaveConfig: SaveConfig saves the same diff as Update, remembers what
// it saved, and a config that was not loaded replaces the whole state.
func TestSaveConfig(t *testing.T) {
	ctx := context.Background()
	r := &recorder{Dir: fixture(t, "v2")}
	cfg := mustLoad(t, r)
	cfg.Mappings = append(cfg.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"n.example.com"}, Source: SourceManual})
	if err := SaveConfig(ctx, r, cfg); err != nil {
		t.Fatal(err)
	}
	if err := SaveConfig(ctx, r, cfg); err != nil {
		t.Fatal(err)
	}
	if len(r.applies) != 1 {
		t.Fatalf("%d applies, want 1 (the second save has nothing to write)", len(r.applies))
	}
	if writes, _ := names(r.applies[0]); !slices.Equal(writes, []string{"mappings/new.toml"}) {
		t.Errorf("writes %q", writes)
	}
	cfg.Mappings = slices.DeleteFunc(cfg.Mappings, func(m Mapping) bool { return m.ID == "new" })
	if err := SaveConfig(ctx, r, cfg); err != nil {
		t.Fatal(err)
	}
	if _, deletes := names(r.applies[1]); !slices.Equal(deletes, []string{"mappings/new.toml"}) {
		t.Errorf("deletes %q", deletes)
	}

	fresh := &Config{SchemaVersion: SchemaVersion, Listeners: []Listener{{Name: "web", Addr: ":443"}},
		Mappings: []Mapping{{ID: "web", Listener: "web", Hosts: []string{"w.example.com"}, Source: SourceManual}}}
	if err := SaveConfig(ctx, r, fresh); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, r); !reflect.DeepEqual(desired(got), desired(fresh)) {
		t.Errorf("after saving a fresh config:\n%+v", desired(got))
	}
	if _, deletes := names(r.applies[2]); !slices.Equal(deletes, []string{"mappings/api.toml", "mappings/wild.toml"}) {
		t.Errorf("deletes %q", deletes)
	}
}

// TestSaveConfigMany: a save of many changes remembers them all too.
func TestSaveConfigMany(t *testing.T) {
	ctx := context.Background()
	r := &recorder{Dir: fixture(t, "v2")}
	cfg := mustLoad(t, r)
	for i := range 2 * bulkChange {
		id := fmt.Sprintf("m%03d", i)
		cfg.Mappings = append(cfg.Mappings, Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: SourceManual})
	}
	cfg.Mappings = slices.DeleteFunc(cfg.Mappings, func(m Mapping) bool { return m.ID == "api" })
	for range 2 {
		if err := SaveConfig(ctx, r, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.applies) != 1 || len(r.applies[0].Writes) != 2*bulkChange || len(r.applies[0].Deletes) != 1 {
		t.Fatalf("%d applies, the first with %d writes", len(r.applies), len(r.applies[0].Writes))
	}
	m, _ := cfg.Mapping("m007")
	m.Days = 3
	if err := SaveConfig(ctx, r, cfg); err != nil {
		t.Fatal(err)
	}
	if writes, _ := names(r.applies[len(r.applies)-1]); len(r.applies) != 2 || !slices.Equal(writes, []string{"mappings/m007.toml"}) {
		t.Errorf("%d applies, the last writes %q", len(r.applies), writes)
	}
}

// TestSaveFreshConfigOverV1 keeps the version 1 file it replaces.
func TestSaveFreshConfigOverV1(t *testing.T) {
	ctx := context.Background()
	d := fixture(t, "v1")
	v1, _ := os.ReadFile(filepath.Join(d.Root(), ConfigFile))
	if err := SaveConfig(ctx, d, &Config{SchemaVersion: SchemaVersion}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(d.Root(), BackupV1File)); err != nil || string(b) != string(v1) {
		t.Errorf("backup: %v", err)
	}
	if cfg := mustLoad(t, d); cfg.SchemaVersion != 2 || len(cfg.Mappings) != 0 || len(cfg.Listeners) != 0 {
		t.Errorf("after: %+v", cfg)
	}
}

// TestDigestCoversEveryField: a change of any field of a mapping is a
// change of its record.
func TestDigestCoversEveryField(t *testing.T) {
	base := Mapping{Hosts: []string{"a"}}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		m := base
		m.Hosts = slices.Clone(base.Hosts)
		f := reflect.ValueOf(&m).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("changed")
		case reflect.Int:
			f.SetInt(7)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"b"}))
		default:
			t.Fatalf("field %s of kind %v: teach digest and this test", typ.Field(i).Name, f.Kind())
		}
		if digest(&base) == digest(&m) {
			t.Errorf("a change of %s is not seen", typ.Field(i).Name)
		}
	}
	// Fields that run into each other are still told apart.
	a := Mapping{Hosts: []string{"ab", "c"}}
	b := Mapping{Hosts: []string{"a", "bc"}}
	if digest(&a) == digest(&b) {
		t.Error("hosts [ab c] and [a bc] have one digest")
	}
}

// TestLoadConfigLoose reads the records that decode of a state that does
// not validate.
func TestLoadConfigLoose(t *testing.T) {
	ctx := context.Background()
	d := fixture(t, "v2")
	for name, content := range map[string]string{
		RecordName("web"): "id = \"web\"\nlistener = \"nope\"\nhosts = [\"w.example.com\"]\n",
		RecordName("bad"): "id = ",
	} {
		if err := d.Write(ctx, name, []byte(content), SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	cfg, ok := LoadConfigLoose(ctx, d)
	if !ok {
		t.Fatal("not loaded")
	}
	var ids []string
	for _, m := range cfg.Mappings {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"api", "web", "wild"}) || len(cfg.Listeners) != 2 {
		t.Errorf("loose: %q, %d listeners", ids, len(cfg.Listeners))
	}
	if v1, ok := LoadConfigLoose(ctx, fixture(t, "v1")); !ok || len(v1.Mappings) != 3 {
		t.Errorf("loose v1: %+v, %v", v1, ok)
	}
}

func TestIsRecordFile(t *testing.T) {
	for name, want := range map[string]bool{
		"mappings/web.toml": true, "mappings/Web.toml": true, "mappings/a.b.toml": true,
		"mappings/.web.toml.swp": false, "mappings/web.toml~": false, "mappings/.#web.toml": false, "mappings/.web.toml": false,
		"mappings/sub/web.toml": false, "p2ptls.toml": false, "web.toml": false, "certs/public/web/meta.toml": false,
	} {
		if got := IsRecordFile(name); got != want {
			t.Errorf("IsRecordFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestSaveConfigFinishesABegunCommit: a migration under SaveConfig after
// the caller's first write (mapping add writes the certificate first) is
// finished when the context ends, as every commit in progress is.
func TestSaveConfigFinishesABegunCommit(t *testing.T) {
	d := fixture(t, "v1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	unlock, err := d.Lock(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, d)
	if err := d.Write(ctx, "certs/public/web/cert.pem", []byte("c"), SecretMode); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := SaveConfig(ctx, d, cfg); err != nil {
		t.Errorf("SaveConfig after the commit began: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, d); got.SchemaVersion != SchemaVersion || len(got.Mappings) != 3 {
		t.Errorf("after: schema %d, %d mappings", got.SchemaVersion, len(got.Mappings))
	}
}
