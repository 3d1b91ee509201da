package snapshot_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/snapshot"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

const source = "etcd://127.0.0.1:2379/p2ptls"

// errCut is what a cut primary answers, as the etcd store would.
var errCut = fmt.Errorf("etcd %s: context deadline exceeded: %w", "127.0.0.1:2379", state.ErrUnreachable)

// backend is what a primary stands in front of.
type backend interface {
	state.Store
	state.Claimer
}

// primary is a store standing in for a shared one that a test can cut
// off: while cut, every call fails with errCut. The test changes the store
// behind the cut (another replica's writes) through backend.
type primary struct {
	backend
	Dir *state.Dir // the backend, when it is a directory
	cut atomic.Bool
	// locking, when set, is told of every Lock before it waits.
	locking atomic.Pointer[chan string]
}

func newPrimary(t *testing.T) *primary {
	t.Helper()
	d := state.OpenDir(filepath.Join(t.TempDir(), "primary"), 5*time.Second)
	return &primary{backend: d, Dir: d}
}

// newMemPrimary is a primary that is no directory, as etcd is not.
func newMemPrimary() *primary {
	return &primary{backend: statetest.NewMem("shared", 5*time.Second)}
}

func (p *primary) err() error {
	if p.cut.Load() {
		return errCut
	}
	return nil
}

func (p *primary) Read(ctx context.Context, name string) ([]byte, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.backend.Read(ctx, name)
}

func (p *primary) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.backend.Stat(ctx, name)
}

func (p *primary) List(ctx context.Context, dir string) ([]string, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.backend.List(ctx, dir)
}

func (p *primary) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	if err := p.err(); err != nil {
		return err
	}
	return p.backend.Write(ctx, name, data, perm)
}

func (p *primary) Delete(ctx context.Context, name string) error {
	if err := p.err(); err != nil {
		return err
	}
	return p.backend.Delete(ctx, name)
}

func (p *primary) Apply(ctx context.Context, c state.Change) error {
	if err := p.err(); err != nil {
		return err
	}
	return p.backend.Apply(ctx, c)
}

func (p *primary) Replace(ctx context.Context, fill func(state.Staging) error, opts state.ReplaceOptions) (*state.Replaced, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.backend.Replace(ctx, fill, opts)
}

func (p *primary) Lock(ctx context.Context, purpose string) (func() error, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	if ch := p.locking.Load(); ch != nil {
		*ch <- purpose
	}
	return p.backend.Lock(ctx, purpose)
}

func (p *primary) Revision(ctx context.Context) (string, error) {
	if err := p.err(); err != nil {
		return "", err
	}
	return p.backend.Revision(ctx)
}

func (p *primary) TryClaim(ctx context.Context, name string) (func(), bool, error) {
	if err := p.err(); err != nil {
		return nil, false, err
	}
	return p.backend.TryClaim(ctx, name)
}

// opener opens p, or fails as a cut store does.
func (p *primary) opener(ctx context.Context) (state.Store, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p, nil
}

func options(p *primary, dir string) snapshot.Options {
	return snapshot.Options{Open: p.opener, Dir: dir, Source: source, Log: slog.New(slog.DiscardHandler),
		LockTimeout: 5 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, Heartbeat: 50 * time.Millisecond}
}

func open(t *testing.T, p *primary, dir string) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(context.Background(), options(p, dir))
	if err != nil {
		t.Fatalf("open the snapshot: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seed gives p a listener "web" on addr and self-signed mappings ids.
func seed(t *testing.T, s state.Store, addr string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: addr}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		addMapping(t, s, id)
	}
}

func addMapping(t *testing.T, s state.Store, id string) {
	t.Helper()
	in := mappings.Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned}}
	if _, _, err := mappings.Add(context.Background(), s, in, time.Now()); err != nil {
		t.Fatalf("add mapping %s: %v", id, err)
	}
}

// eventually waits (at most 10 s) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// content is a directory's state files with modes and checksums, without
// what is no part of the state (locks, revisions, run/, challenges, the
// marker) and without directories (a copy makes those its files need).
func content(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := statetest.Snapshot(t, dir)
	for p, entry := range snap {
		name := filepath.ToSlash(p)
		top, _, _ := strings.Cut(name, "/")
		switch {
		case strings.HasPrefix(entry, "d"), top == state.LockFile, top == state.RevisionFile, top == state.RunDir,
			top == snapshot.MarkerFile, top == state.JournalFile, strings.HasPrefix(name, "acme/challenges/"):
			delete(snap, p)
		}
	}
	return snap
}

// storeContent is content for any store, read through it.
func storeContent(t *testing.T, s state.Store) map[string]string {
	t.Helper()
	snap := statetest.SnapshotStore(t, s, state.LockFile, state.RevisionFile, state.RunDir, snapshot.MarkerFile,
		state.JournalFile, "acme/challenges")
	for p, entry := range snap {
		if strings.HasPrefix(entry, "d") {
			delete(snap, p)
		}
	}
	return snap
}

// sameContent reports whether the copy in dir holds what p holds.
func sameContent(t *testing.T, p *primary, dir string) bool {
	t.Helper()
	a, b := storeContent(t, p.backend), storeContent(t, state.OpenDir(dir, time.Second))
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func mappingIDs(t *testing.T, r state.Reader) []string {
	t.Helper()
	cfg, err := state.LoadConfig(context.Background(), r)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var ids []string
	for _, m := range cfg.Mappings {
		ids = append(ids, m.ID)
	}
	return ids
}
