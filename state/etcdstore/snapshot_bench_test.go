package etcdstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/snapshot"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// lockOnly hides Pinned: the snapshot reads it under the state lock, as
// it did before Pinned.
type lockOnly struct{ state.Store }

// BenchmarkSnapshotOnEtcd is serve's snapshot of an etcd store of n
// mappings, read pinned (as serve does) or under the state lock (as
// before): the first copy (Open on an empty directory), and one record
// changed through the store until it is in the copy (watch included).
func BenchmarkSnapshotOnEtcd(b *testing.B) {
	c := etcdtest.Start(b)
	for _, n := range []int{1000, 10000} {
		prefix := newPrefix("snapbench")
		fillRecords(b, c, prefix, n)
		cfg := Config{Endpoints: c.Endpoints(), Prefix: prefix, SessionTTL: testTTL}
		for _, via := range []string{"pinned", "lock"} {
			open := func(ctx context.Context) (state.Store, error) {
				s, err := Open(ctx, cfg, time.Minute)
				if via == "lock" && err == nil {
					return lockOnly{s}, nil
				}
				return s, err
			}
			opts := func(dir string) snapshot.Options {
				return snapshot.Options{Open: open, Dir: dir, Source: cfg.URL(), Log: slog.New(slog.DiscardHandler), Heartbeat: time.Hour}
			}
			b.Run(fmt.Sprintf("first/%s/mappings=%d", via, n), func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					s, err := snapshot.Open(b.Context(), opts(filepath.Join(b.TempDir(), fmt.Sprint(i))))
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					_ = s.Close()
					b.StartTimer()
				}
			})
			b.Run(fmt.Sprintf("record/%s/mappings=%d", via, n), func(b *testing.B) {
				dir := filepath.Join(b.TempDir(), "snapshot")
				s, err := snapshot.Open(b.Context(), opts(dir))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				w := openBench(b, cfg)
				name := state.RecordName("m000001")
				rec, err := w.Read(b.Context(), name)
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; b.Loop(); i++ {
					data := append(bytes.Clone(rec), fmt.Sprintf("# %d\n", i)...)
					if err := w.Write(b.Context(), name, data, state.SecretMode); err != nil {
						b.Fatal(err)
					}
					deadline := time.Now().Add(30 * time.Second)
					for {
						if got, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name))); bytes.Equal(got, data) {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("the change did not reach the copy in 30 s: %+v", s.Health())
						}
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
	}
}

func openBench(b *testing.B, cfg Config) *Store {
	b.Helper()
	s, err := Open(b.Context(), cfg, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}
