package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/snapshot"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// TestSnapshotServesWhileEtcdIsAway puts state/snapshot in front of a
// real etcd store: with the cluster stopped, the copy answers reads, and
// changes fail as unreachable.
func TestSnapshotServesWhileEtcdIsAway(t *testing.T) {
	c := etcdtest.Start(t)
	prefix := newPrefix("snapshot")
	ctx := testCtx(t)
	seedStore := openTest(t, c, prefix)
	seedStore.wait = time.Minute
	if _, err := state.AddListener(ctx, seedStore, state.Listener{Name: "web", Addr: "127.0.0.1:8443"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		in := mappings.Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned}}
		if _, _, err := mappings.Add(ctx, seedStore, in, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	want, err := seedStore.Read(ctx, state.ConfigFile)
	mustDo(t, err)
	cfg := Config{Endpoints: c.Endpoints(), Prefix: prefix, DialTimeout: time.Second, RequestTimeout: time.Second, SessionTTL: testTTL}
	s, err := snapshot.Open(ctx, snapshot.Options{
		Open:     func(ctx context.Context) (state.Store, error) { return Open(ctx, cfg, time.Second) },
		Dir:      filepath.Join(t.TempDir(), "copy"),
		Source:   cfg.URL(),
		Log:      slog.New(slog.DiscardHandler),
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Heartbeat: 100 * time.Millisecond,
	})
	mustDo(t, err)
	defer s.Close()
	waitFor(t, "the copy is current", func() bool { return s.Health().Current })

	c.Stop(0)
	waitFor(t, "the snapshot sees etcd gone", func() bool { return !s.Health().Connected })
	got, err := s.Read(ctx, state.ConfigFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read with etcd away = %q, %v", got, err)
	}
	loaded, err := state.LoadConfig(ctx, s)
	if err != nil || len(loaded.Mappings) != 2 {
		t.Fatalf("load with etcd away: %v, %v", loaded, err)
	}
	if err := s.Write(ctx, "certs/x", []byte("x"), state.SecretMode); !errors.Is(err, state.ErrUnreachable) {
		t.Errorf("write with etcd away = %v, want unreachable", err)
	}
	c.Restart(t, 0)
	waitFor(t, "the snapshot reconnects", func() bool { return s.Health().Connected })
}

// waitFor waits (at most 20 s) for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
