package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/snapshot"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

func TestCopyFollowsPrimary(t *testing.T) {
	ctx := context.Background()
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	s := open(t, p, dir)

	if !sameContent(t, p, dir) {
		t.Fatalf("the first copy differs from the primary:\n%v\n%v", content(t, p.Dir.Root()), content(t, dir))
	}
	if h := s.Health(); !h.Connected || !h.Current || h.Error != "" || h.SnapshotAt.IsZero() || h.SnapshotRevision == "" {
		t.Errorf("health after the first copy = %+v", h)
	}
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("snapshot directory mode = %v, %v; want 0700", info.Mode().Perm(), err)
	}
	keys := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, "key.pem") {
			keys++
			if info, _ := d.Info(); info.Mode().Perm() != state.SecretMode {
				t.Errorf("%s is %v in the copy, want 0600", path, info.Mode().Perm())
			}
		}
		return nil
	})
	if keys == 0 {
		t.Error("the copy holds no key file")
	}

	// A change through the wrapper (this replica) and one straight to the
	// primary (another replica) both reach the copy; a removed mapping
	// leaves it, certificate files and all.
	addMapping(t, s, "b")
	addMapping(t, p.Dir, "c")
	if _, err := mappings.Remove(ctx, p.Dir, "a"); err != nil {
		t.Fatal(err)
	}
	// Runtime status and challenges stay out.
	if err := p.Write(ctx, "run/status.json", []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, state.HTTP01Dir+"/token", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("primary %v\ncopy %v\nhealth %+v", content(t, p.Dir.Root()), content(t, dir), s.Health())
		}
	})
	eventually(t, "the copy holds b and c and not a", func() bool {
		return slices.Equal(mappingIDs(t, state.OpenDir(dir, time.Second)), []string{"b", "c"}) && sameContent(t, p, dir) && s.Health().Current
	})
	for _, gone := range []string{"certs/public/a", "mappings/a.toml", "run/status.json", state.HTTP01Dir} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s in the copy: %v", gone, err)
		}
	}
}

func TestPrimaryCutServesCopy(t *testing.T) {
	ctx := context.Background()
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a", "b")
	dir := filepath.Join(t.TempDir(), "snapshot")
	s := open(t, p, dir)
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := p.Read(ctx, state.ConfigFile)

	p.cut.Store(true)
	beforeP, beforeC := statetest.Snapshot(t, p.Dir.Root()), statetest.Snapshot(t, dir)
	got, err := s.Read(ctx, state.ConfigFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read p2ptls.toml with the primary cut = %q, %v", got, err)
	}
	if ids := mappingIDs(t, s); !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("mappings with the primary cut = %v", ids)
	}
	if got, err := s.Revision(ctx); err != nil || got != rev {
		t.Errorf("revision with the primary cut = %q, %v; want %q, the one before", got, err, rev)
	}
	h := s.Health()
	if h.Connected || h.Current || !strings.Contains(h.Error, "127.0.0.1:2379") || h.SnapshotRevision != rev {
		t.Errorf("health with the primary cut = %+v", h)
	}
	// The copy's own files are not the store's.
	if names, err := s.List(ctx, ""); err != nil || slices.ContainsFunc(names, func(n string) bool {
		return n == snapshot.MarkerFile || n == state.LockFile || n == state.RunDir
	}) {
		t.Errorf("list of the root from the copy = %v, %v", names, err)
	}
	if _, err := s.Read(ctx, snapshot.MarkerFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read of the marker from the copy: %v, want it not to exist", err)
	}

	changes := []struct {
		desc string
		do   func() error
	}{
		{"update", func() error {
			return state.Update(ctx, s, "test", func(tx *state.Tx) error { tx.Config.Mappings = tx.Config.Mappings[:1]; return nil })
		}},
		{"mapping add", func() error {
			_, _, err := mappings.Add(ctx, s, mappings.Input{Mapping: state.Mapping{ID: "c", Listener: "web", Hosts: []string{"c.example.com"}, Source: state.SourceSelfSigned}}, time.Now())
			return err
		}},
		{"write", func() error { return s.Write(ctx, "certs/public/a/cert.pem", []byte("x"), 0o644) }},
		{"delete", func() error { return s.Delete(ctx, "mappings/a.toml") }},
		{"apply", func() error { return s.Apply(ctx, state.Change{Deletes: []string{"mappings"}}) }},
		{"lock", func() error { _, err := s.Lock(ctx, "renew"); return err }},
		{"claim", func() error { _, _, err := state.ClaimLocal(ctx, s, "order-a"); return err }},
		{"replace", func() error {
			_, err := s.Replace(ctx, func(state.Staging) error { return nil }, state.ReplaceOptions{})
			return err
		}},
	}
	for _, tc := range changes {
		t.Run(tc.desc, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, state.ErrUnreachable) {
				t.Errorf("%s with the primary cut: %v, want the unreachable error", tc.desc, err)
			}
		})
	}
	statetest.AssertSame(t, beforeP, statetest.Snapshot(t, p.Dir.Root()))
	statetest.AssertSame(t, beforeC, statetest.Snapshot(t, dir))

	// Runtime status is kept beside the copy meanwhile, so that serve
	// runs; the primary does not get it.
	const status = "run/status.json"
	if err := s.Write(ctx, status, []byte(`{"pid":1}`), 0o600); err != nil {
		t.Fatalf("write runtime status with the primary cut: %v", err)
	}
	if b, err := s.Read(ctx, status); err != nil || string(b) != `{"pid":1}` {
		t.Errorf("read runtime status back = %q, %v", b, err)
	}
	if err := s.Delete(ctx, status); err != nil {
		t.Errorf("delete runtime status with the primary cut: %v", err)
	}
	if _, err := s.Read(ctx, status); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime status after its delete: %v", err)
	}
	if _, err := s.Read(ctx, state.MemoDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the copy's memos are served: %v", err)
	}
	statetest.AssertSame(t, beforeP, statetest.Snapshot(t, p.Dir.Root()))
}

// On a directory and on a store that is none (as etcd is not).
func TestRestartWhilePrimaryDownThenCatchUp(t *testing.T) {
	for _, tc := range []struct {
		desc string
		new  func(t *testing.T) *primary
	}{
		{"directory", newPrimary},
		{"memory", func(*testing.T) *primary { return newMemPrimary() }},
	} {
		t.Run(tc.desc, func(t *testing.T) { restartThenCatchUp(t, tc.new(t)) })
	}
}

func restartThenCatchUp(t *testing.T, p *primary) {
	ctx := context.Background()
	seed(t, p, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	first := open(t, p, dir)
	rev, _ := first.Revision(ctx)
	synced := first.Health().SnapshotAt
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	p.cut.Store(true)
	s := open(t, p, dir)
	if ids := mappingIDs(t, s); !slices.Equal(ids, []string{"a"}) {
		t.Errorf("mappings served after a restart with the primary down = %v", ids)
	}
	h := s.Health()
	if h.Connected || h.SnapshotRevision != rev || !h.SnapshotAt.Equal(synced.UTC().Truncate(time.Second)) || h.Age(time.Now()) <= 0 {
		t.Errorf("health after a restart with the primary down = %+v (revision %q, synced %v)", h, rev, synced)
	}
	feed := s.WatchChanges(t.Context())
	watch := s.Watch(t.Context())

	// Another replica changes the store meanwhile; this one sees it only
	// once the store is back, as Full, with the copy re-synced first.
	addMapping(t, p.backend, "b")
	time.Sleep(100 * time.Millisecond) // reconnection attempts fail meanwhile
	if ids := mappingIDs(t, state.OpenDir(dir, time.Second)); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("the copy changed while the primary was cut: %v", ids)
	}
	p.cut.Store(false)
	select {
	case <-feed.C:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal once the primary was back")
	}
	if c := feed.Take(); !c.Full {
		t.Errorf("once the primary is back, subscribers are told %+v, want Full", c)
	}
	select {
	case <-watch:
	case <-time.After(10 * time.Second):
		t.Fatal("no Watch signal once the primary was back")
	}
	if ids := mappingIDs(t, state.OpenDir(dir, time.Second)); !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("the copy when subscribers are told = %v, want it re-synced first", ids)
	}
	if h := s.Health(); !h.Connected || !h.Current || h.Error != "" {
		t.Errorf("health once the primary is back = %+v", h)
	}
	if !sameContent(t, p, dir) {
		t.Errorf("the copy differs from the primary once back:\n%v\n%v", storeContent(t, p.backend), content(t, dir))
	}
	// Changes go to the primary again.
	addMapping(t, s, "c")
	if ids := mappingIDs(t, p.backend); !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("primary after a change once back = %v", ids)
	}
}

func TestPrimaryLostAndBackWhileRunning(t *testing.T) {
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	s := open(t, p, dir)
	feed := s.WatchChanges(t.Context())

	// Nothing reads: the heartbeat notices.
	p.cut.Store(true)
	eventually(t, "the heartbeat notices the cut", func() bool { return !s.Health().Connected })
	p.cut.Store(false)
	eventually(t, "the store is back", func() bool { return s.Health().Connected })
	select {
	case <-feed.C:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal once the store was back")
	}
	if c := feed.Take(); !c.Full {
		t.Errorf("after the store came back subscribers were told %+v, want Full", c)
	}
}

func TestStartRefusals(t *testing.T) {
	ctx := context.Background()
	// good makes a copy of a primary in dir and returns the primary.
	good := func(t *testing.T, dir string) *primary {
		p := newPrimary(t)
		seed(t, p, "127.0.0.1:8443", "a")
		s := open(t, p, dir)
		s.Close()
		return p
	}
	cases := []struct {
		desc    string
		prepare func(t *testing.T, dir string) *primary
		cut     bool
		source  string
		kind    fault.Kind
		want    []string
	}{
		{"no copy, primary down", func(t *testing.T, dir string) *primary { return newPrimary(t) }, true, "", fault.Failure,
			[]string{source, "is unreachable", "holds no snapshot", "127.0.0.1:2379"}},
		{"not a snapshot, primary up", func(t *testing.T, dir string) *primary {
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600)
			p := newPrimary(t)
			seed(t, p, "127.0.0.1:8443", "a")
			return p
		}, false, "", fault.Invalid, []string{"is not a p2ptls snapshot", "notes.txt"}},
		{"not a directory", func(t *testing.T, dir string) *primary {
			os.WriteFile(dir, []byte("x"), 0o600)
			return newPrimary(t)
		}, false, "", fault.Invalid, []string{"is not a directory"}},
		{"damaged marker", func(t *testing.T, dir string) *primary {
			p := good(t, dir)
			os.WriteFile(filepath.Join(dir, snapshot.MarkerFile), []byte("format = \"x\"\n"), 0o600)
			return p
		}, false, "", fault.Failure, []string{"is damaged", snapshot.MarkerFile}},
		{"damaged copy, primary down", func(t *testing.T, dir string) *primary {
			p := good(t, dir)
			os.WriteFile(filepath.Join(dir, state.ConfigFile), []byte("schema_version = 2\n[[listeners]\n"), 0o600)
			return p
		}, true, "", fault.Failure, []string{"does not load", "is unreachable"}},
		{"copy of another store, primary down", good, true, "etcd://127.0.0.1:2379/other", fault.Failure,
			[]string{"is of " + source, "etcd://127.0.0.1:2379/other"}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snapshot")
			p := tc.prepare(t, dir)
			p.cut.Store(tc.cut)
			before := statetest.Snapshot(t, dir)
			o := options(p, dir)
			if tc.source != "" {
				o.Source = tc.source
			}
			s, err := snapshot.Open(ctx, o)
			if err == nil {
				s.Close()
			}
			statetest.WantFault(t, err, tc.kind, tc.want...)
			if tc.cut && !errors.Is(err, state.ErrUnreachable) {
				t.Errorf("refusal with the primary down does not wrap the unreachable error: %v", err)
			}
			if fault.HintOf(err) == "" {
				t.Errorf("refusal %q has no hint", err)
			}
			if info, _ := os.Stat(dir); info == nil || info.IsDir() {
				statetest.AssertSame(t, before, statetest.Snapshot(t, dir))
			}
		})
	}
}

func TestDamagedCopyIsRemadeWhilePrimaryUp(t *testing.T) {
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	open(t, p, dir).Close()
	os.WriteFile(filepath.Join(dir, state.ConfigFile), []byte("garbage ["), 0o600)
	os.WriteFile(filepath.Join(dir, "mappings", "stray.toml"), []byte("garbage ["), 0o600)
	open(t, p, dir)
	if !sameContent(t, p, dir) {
		t.Errorf("the damaged copy was not re-made:\n%v\n%v", content(t, p.Dir.Root()), content(t, dir))
	}
}

// An invalid state on the primary (a hand edit that does not load) never
// reaches the copy; the copy keeps the last good state and says why.
func TestInvalidPrimaryStateNeverReachesCopy(t *testing.T) {
	ctx := context.Background()
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a", "b")
	dir := filepath.Join(t.TempDir(), "snapshot")
	s := open(t, p, dir)
	before := content(t, dir)

	rec := state.RecordName("a")
	good, _ := p.Read(ctx, rec)
	bad := bytes.Replace(good, []byte("listener = 'web'"), []byte("listener = 'nope'"), 1)
	if bytes.Equal(bad, good) {
		t.Fatalf("record has no listener line:\n%s", good)
	}
	if err := os.WriteFile(filepath.Join(p.Dir.Root(), rec), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed copy shows in health", func() bool { return strings.Contains(s.Health().Error, "nope") })
	if h := s.Health(); !h.Connected || h.Current {
		t.Errorf("health with the primary's state invalid = %+v", h)
	}
	statetest.AssertSame(t, before, content(t, dir))

	if err := os.WriteFile(filepath.Join(p.Dir.Root(), rec), good, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the copy is current again", func() bool { return s.Health().Current && s.Health().Error == "" })
	if !sameContent(t, p, dir) {
		t.Error("copy differs from the primary once its state is fixed")
	}
}

// The copy reads the primary under its lock: a change in the making (the
// lock held, half of its files written) is not copied until it is done.
func TestCopyWaitsForChangeInTheMaking(t *testing.T) {
	ctx := context.Background()
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	s := open(t, p, dir)

	p.cut.Store(true)
	eventually(t, "the cut is noticed", func() bool { return !s.Health().Connected })
	unlock, err := p.Dir.Lock(ctx, "a change in two halves")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Dir.Write(ctx, "certs/public/a/half-1", []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	locking := make(chan string, 16)
	p.locking.Store(&locking)
	p.cut.Store(false)
	select {
	case purpose := <-locking:
		if !strings.Contains(purpose, "snapshot") {
			t.Errorf("the copy locks the primary for %q", purpose)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the copy did not try to lock the primary")
	}
	time.Sleep(200 * time.Millisecond) // a copy that did not wait for the lock would be done by now
	if _, err := os.Stat(filepath.Join(dir, "certs/public/a/half-1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("half a change reached the copy: %v", err)
	}
	if s.Health().Connected {
		t.Error("connected before the copy was re-synced")
	}
	if err := p.Dir.Write(ctx, "certs/public/a/half-2", []byte("2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the whole change is copied", func() bool { return s.Health().Current && sameContent(t, p, dir) })
}

// A start while the primary answers with a state that does not load keeps
// the copy found as the one to fall back to.
func TestStartWithInvalidPrimaryKeepsCopy(t *testing.T) {
	p := newPrimary(t)
	seed(t, p, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	open(t, p, dir).Close()
	if err := os.WriteFile(filepath.Join(p.Dir.Root(), state.ConfigFile), []byte("schema_version = 2\n[[listeners]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := content(t, dir)
	s := open(t, p, dir)
	if h := s.Health(); !h.Connected || h.Current || !strings.Contains(h.Error, "does not load") {
		t.Errorf("health with the primary's state invalid = %+v", h)
	}
	p.cut.Store(true)
	if ids := mappingIDs(t, s); !slices.Equal(ids, []string{"a"}) {
		t.Errorf("mappings served from the copy = %v", ids)
	}
	statetest.AssertSame(t, before, content(t, dir))
}
