package public

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// startStore counts Revision calls (each stats every record: 0.3 s at
// 100k) and runs duringLoad once, when Start's load reads its first
// record.
type startStore struct {
	state.Store
	revisions  atomic.Int64
	duringLoad func()
	once       sync.Once
}

func (s *startStore) Revision(ctx context.Context) (string, error) {
	s.revisions.Add(1)
	return s.Store.Revision(ctx)
}

func (s *startStore) Read(ctx context.Context, name string) ([]byte, error) {
	if strings.HasPrefix(name, state.RecordsDir+"/") && s.duringLoad != nil {
		s.once.Do(s.duringLoad)
	}
	return s.Store.Read(ctx, name)
}

// TestStartMissesNoChangeWithoutRevision: serve subscribes before it
// loads, so a change made during Start's load is served once Run follows,
// and neither Start nor Run computes the store's revision to find out.
func TestStartMissesNoChangeWithoutRevision(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *incrFixture)
		served string
		want   []string
	}{
		{"a mapping added", func(f *incrFixture) {
			f.cert("late", "late.example.com")
			f.update(func(cfg *state.Config) {
				cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: "late", Listener: "web", Hosts: []string{"late.example.com"}, Source: state.SourceManual})
			})
		}, "late.example.com", []string{"late.example.com"}},
		{"a record edited by hand", func(f *incrFixture) {
			f.cert("m01", "m01.example.com", "moved.example.com")
			f.record("m01", "id = 'm01'\nlistener = 'web'\nhosts = ['m01.example.com', 'moved.example.com']\nsource = 'manual'\n")
		}, "moved.example.com", []string{"m01.example.com", "moved.example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st *startStore
			f := newIncrFixtureOver(t, 3, func(s state.Store) state.Store {
				// The change is made from the store under the fixture,
				// as another process would.
				during := &incrFixture{t: t, dir: s.(*countingStore).Store.(*state.Dir)}
				st = &startStore{Store: s, duringLoad: func() { tc.change(during) }}
				return st
			})
			f.until(tc.served+" served", func() bool { return slices.Equal(f.served(tc.served), tc.want) })
			f.consistent(tc.name)
			if n := st.revisions.Load(); n != 0 {
				t.Errorf("serve computed the revision %d times; its subscription tells every change", n)
			}
		})
	}
}

// feedStore keeps the subscriptions made on it.
type feedStore struct {
	state.Store
	mu    sync.Mutex
	feeds []*state.Feed
}

func (s *feedStore) WatchChanges(ctx context.Context) *state.Feed {
	f := s.Store.WatchChanges(ctx)
	s.mu.Lock()
	s.feeds = append(s.feeds, f)
	s.mu.Unlock()
	return f
}

// ended waits until every subscription made on s has ended.
func (s *feedStore) ended(t *testing.T, what string) {
	t.Helper()
	s.mu.Lock()
	feeds := slices.Clone(s.feeds)
	s.mu.Unlock()
	if len(feeds) == 0 {
		t.Fatalf("%s: no subscription was made", what)
	}
	for _, f := range feeds {
		select {
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: a subscription is still running after 15s", what)
		case _, ok := <-f.C:
			if ok {
				// A pending signal; the close follows.
				select {
				case <-time.After(15 * time.Second):
					t.Fatalf("%s: a subscription is still running after 15s", what)
				case <-f.C:
				}
			}
		}
	}
}

// TestStartEndsItsSubscription: the subscription Start makes ends with a
// Start that fails (a state that does not load, a port taken) and with a
// server stopped without Run, so that no watch outlives its server.
func TestStartEndsItsSubscription(t *testing.T) {
	f := newIncrFixture(t, 1)
	cases := []struct {
		name  string
		store func(t *testing.T) state.Store
		fails bool
	}{
		{"the port is taken", func(t *testing.T) state.Store { return f.dir }, true},
		{"the state does not load", func(t *testing.T) state.Store {
			d := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
			if err := os.MkdirAll(d.Root(), state.DirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d.Root(), state.ConfigFile), []byte("schema_version = 99\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return d
		}, true},
		{"stopped without Run", func(t *testing.T) state.Store {
			d := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
			cfg := &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{{Name: "web", Addr: freeLocalAddr(t)}}}
			if err := state.SaveConfig(context.Background(), d, cfg); err != nil {
				t.Fatal(err)
			}
			return d
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := &feedStore{Store: tc.store(t)}
			s := New(Options{Store: fs, Log: discardLog})
			err := s.Start(context.Background())
			if tc.fails != (err != nil) {
				t.Fatalf("Start: %v, want failure %v", err, tc.fails)
			}
			if err == nil {
				stopServer(s)
			}
			fs.ended(t, tc.name)
		})
	}
}

// TestTrimAfterLargeLoad: a full load of trimAfterLoadMin mappings or more
// hands its garbage back to the operating system; a smaller one does not
// pay for the collection.
func TestTrimAfterLargeLoad(t *testing.T) {
	called := make(chan struct{}, 1)
	freeOSMemory = func() { called <- struct{}{} }
	t.Cleanup(func() { freeOSMemory = debug.FreeOSMemory })
	for _, tc := range []struct {
		n    int
		trim bool
	}{{trimAfterLoadMin - 1, false}, {trimAfterLoadMin, true}} {
		s := New(Options{Log: discardLog})
		for i := range tc.n {
			s.byID.set(newEntry(&state.Mapping{ID: fmt.Sprint(i)}, "web", 0, nil))
		}
		s.trimAfterLoad()
		select {
		case <-called:
			if !tc.trim {
				t.Errorf("%d mappings: trimmed", tc.n)
			}
		case <-time.After(2 * time.Second):
			// Generous: a call would come at once; none is the other case.
			if tc.trim {
				t.Errorf("%d mappings: not trimmed", tc.n)
			}
		}
	}
}
