package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// signalWait bounds every wait for a signal: far above the poll's second,
// for a shared machine running the race detector.
const signalWait = 15 * time.Second

// quiet is how long a test listens for a signal that must not come: longer
// than a poll, so that the poll would have fired by then too.
const quiet = 2500 * time.Millisecond

// watchModes runs a test with fsnotify alone and with the poll alone (as
// on a system whose inotify limits are used up).
var watchModes = []struct {
	name string
	poll bool
}{{"fsnotify", false}, {"poll only", true}}

func forcePoll(t *testing.T) {
	t.Helper()
	newNotifier = func() (*fsnotify.Watcher, error) { return nil, errors.New("inotify disabled by the test") }
	t.Cleanup(func() { newNotifier = fsnotify.NewWatcher })
}

// watched is a state directory with a config and a subscription to it.
type watched struct {
	t    *testing.T
	d    *Dir
	root string
	ch   <-chan struct{}
}

// newWatched subscribes with the poll alone (poll) or with fsnotify alone:
// each must notice every change by itself.
func newWatched(t *testing.T, poll bool) *watched {
	t.Helper()
	if poll {
		forcePoll(t)
	} else {
		watchPoll = time.Hour
		t.Cleanup(func() { watchPoll = time.Second })
	}
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 5*time.Second)
	ctx := context.Background()
	if err := SaveConfig(ctx, d, &Config{SchemaVersion: SchemaVersion}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &watched{t: t, d: d, root: root, ch: d.Watch(wctx)}
	t.Cleanup(func() {
		cancel()
		for range w.ch { // closed once the subscription has ended
		}
	})
	return w
}

func (w *watched) rev() string {
	w.t.Helper()
	r, err := w.d.Revision(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// signalled waits for a signal after what, and checks that the revision
// moved.
func (w *watched) signalled(what, before string) {
	w.t.Helper()
	select {
	case _, ok := <-w.ch:
		if !ok {
			w.t.Fatalf("%s: the channel was closed", what)
		}
	case <-time.After(signalWait):
		w.t.Fatalf("%s: no signal within %v", what, signalWait)
	}
	if w.rev() == before {
		w.t.Errorf("%s: signalled, but the revision did not change", what)
	}
}

// silent checks that no signal comes and the revision stays.
func (w *watched) silent(what, before string) {
	w.t.Helper()
	select {
	case <-w.ch:
		w.t.Errorf("%s: signalled", what)
	case <-time.After(quiet):
	}
	if w.rev() != before {
		w.t.Errorf("%s changed the revision", what)
	}
}

func (w *watched) write(rel, content string) {
	w.t.Helper()
	p := filepath.Join(w.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), DirMode); err != nil {
		w.t.Fatal(err)
	}
	// In place, as an editor or "echo >>" may: no rename, no new inode.
	if err := os.WriteFile(p, []byte(content), SecretMode); err != nil {
		w.t.Fatal(err)
	}
}

// TestWatchSignalsChanges: a locked change, and hand edits of p2ptls.toml
// and of record files under mappings/ (a directory that appears only after
// the watch began) are signalled, to every subscriber, with and without
// fsnotify.
func TestWatchSignalsChanges(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newWatched(t, mode.poll)
			ctx, cancel := context.WithCancel(context.Background())
			second := w.d.Watch(ctx)
			defer func() { cancel(); closed(t, second) }()
			steps := []struct {
				what string
				do   func()
			}{
				{"a locked change", func() {
					err := Update(context.Background(), w.d, "test", func(tx *Tx) error {
						tx.Config.Listeners = append(tx.Config.Listeners, Listener{Name: "web", Addr: "127.0.0.1:8443"})
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				}},
				{"p2ptls.toml edited in place", func() {
					b, err := os.ReadFile(filepath.Join(w.root, ConfigFile))
					if err != nil {
						t.Fatal(err)
					}
					w.write(ConfigFile, string(b)+"\n# edited\n")
				}},
				{"a record created with its directory", func() { w.write("mappings/app.toml", "id = 'app'\n") }},
				{"a record edited in place", func() { w.write("mappings/app.toml", "id = 'app'\nhosts = ['a.example']\n") }},
				{"a second record", func() { w.write("mappings/web.toml", "id = 'web'\n") }},
				{"a record removed", func() {
					if err := os.Remove(filepath.Join(w.root, "mappings", "app.toml")); err != nil {
						t.Fatal(err)
					}
				}},
			}
			for _, s := range steps {
				// A second signal of the step before must not stand in for
				// this step's.
				drain(w.ch)
				drain(second)
				before := w.rev()
				s.do()
				w.signalled(s.what, before)
				select {
				case <-second:
				case <-time.After(signalWait):
					t.Errorf("%s: the second subscriber got no signal", s.what)
				}
			}
		})
	}
}

// TestWatchIgnoresRuntime: runtime status, challenges and a lock taken
// without a change are no change of the desired state.
func TestWatchIgnoresRuntime(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newWatched(t, mode.poll)
			ctx := context.Background()
			before := w.rev()
			unlock, err := w.d.Lock(ctx, "test")
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{RunDir + "/status.json", HTTP01Dir + "/tok", TLSALPN01Dir + "/x.example.pem"} {
				if err := w.d.Write(ctx, name, []byte("x"), SecretMode); err != nil {
					t.Fatal(err)
				}
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			w.write(RunDir+"/status.json", "by hand")
			w.silent("runtime writes", before)
		})
	}
}

// TestWatchFollowsRestoredDirectory: restore renames the state directory
// away and another into its place; the watch follows the path, so that
// edits of the new directory are signalled and the old one's are not.
func TestWatchFollowsRestoredDirectory(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newWatched(t, mode.poll)
			staged := w.root + ".restore-tmp-1"
			if err := os.MkdirAll(staged, DirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(staged, ConfigFile), []byte("schema_version = 1\n"), SecretMode); err != nil {
				t.Fatal(err)
			}
			before := w.rev()
			old := w.root + ".pre-restore-1"
			if err := os.Rename(w.root, old); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(staged, w.root); err != nil {
				t.Fatal(err)
			}
			w.signalled("the directory replaced", before)
			drain(w.ch)

			before = w.rev()
			if err := os.WriteFile(filepath.Join(old, ConfigFile), []byte("# old\n"), SecretMode); err != nil {
				t.Fatal(err)
			}
			w.silent("an edit of the directory renamed away", before)
			w.write(ConfigFile, "schema_version = 1\n# new\n")
			w.signalled("an edit of the new directory", before)
			w.write("mappings/a.toml", "id = 'a'\n")
			w.signalled("a record in the new directory", before)
		})
	}
}

// TestWatchEnds: the channel is closed when its context ends, and once
// every subscription of a Dir has ended no goroutine and no fsnotify
// instance is left.
func TestWatchEnds(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			if mode.poll {
				forcePoll(t)
			}
			d := OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
			baseline := runtime.NumGoroutine()
			ctx1, cancel1 := context.WithCancel(context.Background())
			ctx2, cancel2 := context.WithCancel(context.Background())
			ch1, ch2 := d.Watch(ctx1), d.Watch(ctx2)
			cancel1()
			closed(t, ch1)
			hubs.mu.Lock()
			running := hubs.m[d] != nil
			hubs.mu.Unlock()
			if !running {
				t.Fatal("the hub stopped while a subscriber was left")
			}
			cancel2()
			closed(t, ch2)
			hubs.mu.Lock()
			running = hubs.m[d] != nil
			hubs.mu.Unlock()
			if running {
				t.Error("the hub outlived its last subscriber")
			}
			deadline := time.Now().Add(signalWait)
			for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > baseline {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines, %d before watching:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
			}
			if ch := d.Watch(ctx1); !isClosed(ch) {
				t.Error("Watch with an ended context returned an open channel")
			}
		})
	}
}

// drain lets a second signal of one change (the two renames of a swap)
// come and go.
func drain(ch <-chan struct{}) {
	time.Sleep(100 * time.Millisecond)
	select {
	case <-ch:
	default:
	}
}

func closed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	deadline := time.After(signalWait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel was not closed when its context ended")
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case _, ok := <-ch:
		return !ok
	default:
		return false
	}
}

// TestTxRevisionIsTheStores: a Tx has the revision and the watch of the
// store it changes.
func TestTxRevisionIsTheStores(t *testing.T) {
	w := newWatched(t, false)
	want := w.rev()
	err := Update(context.Background(), w.d, "test", func(tx *Tx) error {
		got, err := tx.Revision(context.Background())
		if err != nil || got != want {
			t.Errorf("tx.Revision = %q, %v; want %q", got, err, want)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ch := tx.Watch(ctx)
		cancel()
		closed(t, ch)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
