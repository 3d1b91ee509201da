package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/snapshot"
)

// pinner is a primary that reads its state without its lock, as the etcd
// store does (snapshot.Pinner).
type pinner struct {
	*primary
	pins atomic.Int32
}

func (p *pinner) Pinned(ctx context.Context) (state.Reader, string, error) {
	if err := p.err(); err != nil {
		return nil, "", err
	}
	p.pins.Add(1)
	rev, err := p.backend.Revision(ctx)
	return p.backend, rev, err
}

func (p *pinner) opener(context.Context) (state.Store, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// A primary that reads at one revision is copied without its lock: a
// writer holding it is not waited for, and the snapshot never asks for it.
func TestPinnedPrimaryIsCopiedWithoutItsLock(t *testing.T) {
	ctx := context.Background()
	p := &pinner{primary: newMemPrimary()}
	seed(t, p.primary, "127.0.0.1:8443", "a")
	locking := make(chan string, 16)
	p.locking.Store(&locking)
	dir := filepath.Join(t.TempDir(), "snapshot")
	o := options(p.primary, dir)
	o.Open = p.opener
	s := openWith(t, o)
	eventually(t, "the first copy", func() bool { return s.Health().Current && sameContent(t, p.primary, dir) })

	unlock, err := p.backend.Lock(ctx, "a long CLI change")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// As the lock's holder does (etcd's changes are whole at one revision).
	if err := p.backend.Write(ctx, "certs/public/a/extra", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the change is copied while the lock is held", func() bool {
		_, err := os.Stat(filepath.Join(dir, "certs", "public", "a", "extra"))
		return err == nil && s.Health().Current && sameContent(t, p.primary, dir)
	})
	select {
	case purpose := <-locking:
		t.Errorf("the snapshot took the lock of a pinned primary (%q)", purpose)
	default:
	}
	if p.pins.Load() < 2 {
		t.Errorf("the copy was read pinned %d times, want one per update", p.pins.Load())
	}
}

func openWith(t *testing.T, o snapshot.Options) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open the snapshot: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// hung is a primary that, while hang is set, answers nothing until the
// caller's context ends, then fails as the etcd store does.
type hung struct {
	*primary
	hang  atomic.Bool
	calls atomic.Int32 // calls made while hung
}

func (h *hung) wait(ctx context.Context) error {
	if !h.hang.Load() {
		return nil
	}
	h.calls.Add(1)
	<-ctx.Done()
	return fmt.Errorf("etcd does not answer: %w: %w", ctx.Err(), state.ErrUnreachable)
}

func (h *hung) Read(ctx context.Context, name string) ([]byte, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.primary.Read(ctx, name)
}

func (h *hung) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.primary.Stat(ctx, name)
}

func (h *hung) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	if err := h.wait(ctx); err != nil {
		return err
	}
	return h.primary.Write(ctx, name, data, perm)
}

func (h *hung) Revision(ctx context.Context) (string, error) {
	if err := h.wait(ctx); err != nil {
		return "", err
	}
	return h.primary.Revision(ctx)
}

// within runs fn, failing the test when it has not returned in d: a call
// that waited for the hung primary would never return.
func within(t *testing.T, what string, d time.Duration, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s did not return in %s", what, d)
	}
}

// Runtime status written while the primary hangs (serve starting or
// stopping as etcd goes away, before a heartbeat noticed) is not held up
// by it: the call gives up within the probe time, is kept in the copy's
// directory, and from then on every call is answered from the copy at
// once, an in-flight challenge read in a handshake too.
func TestHungPrimaryIsNotWaitedFor(t *testing.T) {
	h := &hung{primary: newPrimary(t)}
	seed(t, h.primary, "127.0.0.1:8443", "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	o := options(h.primary, dir)
	o.Open = func(context.Context) (state.Store, error) { return h, nil }
	o.Heartbeat = time.Hour // only the calls below can notice the hang
	s := openWith(t, o)
	eventually(t, "the first copy", func() bool { return s.Health().Current })

	h.hang.Store(true)
	ctx := context.Background() // no deadline of the caller's: only the snapshot's bound ends the wait
	within(t, "a status write to a hung primary", 30*time.Second, func() error {
		return s.Write(ctx, "run/serve/status.json", []byte(`{"ok":true}`), state.SecretMode)
	})
	if s.Health().Connected {
		t.Fatal("the hung primary is still taken for connected")
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "serve", "status.json")); err != nil {
		t.Errorf("the status was not kept in the copy's directory: %v", err)
	}
	before := h.calls.Load()
	within(t, "reads once the primary is known away", 5*time.Second, func() error {
		if _, err := s.Read(ctx, "run/serve/status.json"); err != nil {
			return err
		}
		if _, err := s.Read(ctx, state.HTTP01Dir+"/token"); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("challenge read: %v, want not found", err)
		}
		if got := mappingIDs(t, s); len(got) != 1 {
			return fmt.Errorf("mappings %v, want a", got)
		}
		return s.Write(ctx, "run/serve/status.json", []byte(`{"ok":false}`), state.SecretMode)
	})
	if n := h.calls.Load() - before; n > 1 { // the loop's one reconnection probe at most
		t.Errorf("%d calls went to the primary known to be away", n)
	}
}
