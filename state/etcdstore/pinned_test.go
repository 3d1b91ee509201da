package etcdstore

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// Pinned reads the state as it was when it was taken, whatever changes
// after, and its token is Revision's then.
func TestPinnedReadsOneRevision(t *testing.T) {
	c := etcdtest.Start(t)
	s := openTest(t, c, newPrefix("pinned"))
	ctx := testCtx(t)
	mustDo(t, s.Apply(ctx, state.Change{Writes: []state.FileWrite{
		{Name: "mappings/a.toml", Data: []byte("a1"), Perm: 0o600},
		{Name: "mappings/b.toml", Data: []byte("b1"), Perm: 0o600},
		{Name: "certs/public/a/cert.pem", Data: []byte("c1"), Perm: 0o644},
	}}))
	want, err := s.Revision(ctx)
	mustDo(t, err)
	r, tok, err := s.Pinned(ctx)
	mustDo(t, err)
	if tok != want {
		t.Errorf("pinned token %q, Revision %q", tok, want)
	}
	mustDo(t, s.Apply(ctx, state.Change{Deletes: []string{"mappings/b.toml"}, Writes: []state.FileWrite{
		{Name: "mappings/a.toml", Data: []byte("a2"), Perm: 0o600},
		{Name: "mappings/c.toml", Data: []byte("c2"), Perm: 0o600},
	}}))
	if now, _ := s.Revision(ctx); now == tok {
		t.Fatal("the change did not move the revision")
	}

	tests := []struct {
		name, want string
	}{
		{"mappings/a.toml", "a1"},
		{"mappings/b.toml", "b1"},
		{"certs/public/a/cert.pem", "c1"},
	}
	for _, tc := range tests {
		got, err := r.Read(ctx, tc.name)
		if err != nil || string(got) != tc.want {
			t.Errorf("pinned Read(%s) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := r.Read(ctx, "mappings/c.toml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pinned Read of a file made later: %v, want not found", err)
	}
	for dir, want := range map[string][]string{"": {"certs", "mappings"}, "mappings": {"a.toml", "b.toml"}, "certs/public": {"a"}, "none": nil} {
		got, err := r.List(ctx, dir)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("pinned List(%q) = %v, %v; want %v", dir, got, err, want)
		}
	}
	info, err := r.Stat(ctx, "certs/public/a")
	if err != nil || !info.IsDir() {
		t.Errorf("pinned Stat of a directory: %v, %v", info, err)
	}
	info, err = r.Stat(ctx, "certs/public/a/cert.pem")
	if err != nil || info.IsDir() || info.Mode().Perm() != 0o644 || info.Size() != 2 {
		t.Errorf("pinned Stat of a file: %v, %v", info, err)
	}
	if _, err := r.Stat(ctx, "mappings/c.toml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pinned Stat of a file made later: %v, want not found", err)
	}
	// A fresh one sees the change.
	r2, tok2, err := s.Pinned(ctx)
	mustDo(t, err)
	if got, err := r2.List(ctx, "mappings"); err != nil || !slices.Equal(got, []string{"a.toml", "c.toml"}) || tok2 == tok {
		t.Errorf("a later Pinned lists %v, %v (token %q, was %q)", got, err, tok2, tok)
	}
}

// Close with etcd away does not wait for the lease's revoke beyond
// closeTimeout: the lease ends by itself within its TTL.
func TestCloseWithEtcdAwayIsBounded(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := testCtx(t)
	s, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: newPrefix("close"), SessionTTL: time.Minute}, time.Second)
	mustDo(t, err)
	unlock, err := s.Lock(ctx, "hold a session")
	mustDo(t, err)
	mustDo(t, unlock())
	c.Stop(0)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		t.Logf("Close with etcd away took %v", time.Since(start).Round(time.Millisecond))
		if !errors.Is(err, state.ErrUnreachable) {
			t.Errorf("Close with etcd away: %v, want it to say etcd does not answer", err)
		}
	case <-time.After(closeTimeout + 10*time.Second):
		t.Fatalf("Close with etcd away did not return within %s", closeTimeout+10*time.Second)
	}
}

// TestPinnedScanPastOnePage: a directory of more values than one page of
// scan is read wholly at the pinned revision, its later pages too.
func TestPinnedScanPastOnePage(t *testing.T) {
	c := etcdtest.Start(t)
	s := openTest(t, c, newPrefix("pinnedpages"))
	ctx := testCtx(t)
	n := 2*scanPage + 50
	write := func(version string) {
		for i := 0; i < n; i += 50 {
			var ch state.Change
			for j := i; j < min(i+50, n); j++ {
				ch.Writes = append(ch.Writes, state.FileWrite{Name: fmt.Sprintf("mappings/m%04d.toml", j), Data: []byte(version), Perm: 0o600})
			}
			mustDo(t, s.Apply(ctx, ch))
		}
	}
	write("v1")
	r, _, err := s.Pinned(ctx)
	mustDo(t, err)
	write("v2")
	names, err := r.List(ctx, "mappings")
	if err != nil || len(names) != n {
		t.Fatalf("pinned List: %d names, %v; want %d", len(names), err, n)
	}
	for _, name := range names {
		if b, err := r.Read(ctx, "mappings/"+name); err != nil || string(b) != "v1" {
			t.Fatalf("pinned Read(%s) = %q, %v; want the pinned v1", name, b, err)
		}
	}
}
