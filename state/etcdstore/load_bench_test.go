package etcdstore

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// BenchmarkLoadConfig loads a schema-2 state of n mappings (one record
// each) from etcd: cold, as a command does (Open, load, Close), and warm,
// as serve reloads with its store open. Goal: 100k in 2 s.
//
//	go test -run '^$' -bench LoadConfig -benchtime 3x ./state/etcdstore/
func BenchmarkLoadConfig(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("mappings=%d", n), func(b *testing.B) {
			c := etcdtest.StartClusterWith(b, 1, nil)
			prefix := fmt.Sprintf("bench/%d", n)
			fillRecords(b, c, prefix, n)
			cfg := Config{Endpoints: c.Endpoints(), Prefix: prefix}
			load := func(b *testing.B, s *Store) {
				loaded, err := state.LoadConfig(b.Context(), s)
				if err != nil {
					b.Fatal(err)
				}
				if len(loaded.Mappings) != n {
					b.Fatalf("loaded %d mappings, want %d", len(loaded.Mappings), n)
				}
			}
			b.Run("cold", func(b *testing.B) {
				for b.Loop() {
					s, err := Open(b.Context(), cfg, time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					load(b, s)
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("warm", func(b *testing.B) {
				s, err := Open(b.Context(), cfg, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				load(b, s)
				for b.Loop() {
					load(b, s)
				}
			})
		})
	}
}

// fillRecords saves a state of n self-signed mappings into a directory,
// as p2ptls writes it, and copies its files into etcd under prefix with
// plain batched puts (a large Apply would stage every value first, which
// only makes setup slower).
func fillRecords(b *testing.B, c *etcdtest.Cluster, prefix string, n int) {
	b.Helper()
	cfg := &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{{Name: "web", Addr: ":443"}}}
	for i := range n {
		id := fmt.Sprintf("m%06d", i)
		cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned, Days: 90})
	}
	root := filepath.Join(b.TempDir(), "state")
	dir := state.OpenDir(root, time.Minute)
	unlock, err := dir.Lock(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := state.SaveConfig(b.Context(), dir, cfg); err != nil {
		b.Fatal(err)
	}
	if err := unlock(); err != nil {
		b.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	files := "/" + prefix + "/v1/" + dirFiles
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := cli.Txn(b.Context()).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	now := time.Now()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == state.LockFile || rel == state.RevisionFile {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(files+filepath.ToSlash(rel), encodeValue(data, state.SecretMode, now)))
		if len(ops) == maxTxnOps {
			flush()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	flush()
	m := fmt.Sprintf(`{"tool":%q,"layout":%d}`, toolName, Layout)
	if _, err := cli.Put(b.Context(), "/"+prefix+"/v1/"+keyMeta, m); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkScan reads every value under a prefix of n small keys: scan
// (keys, then values over explicit ranges) against the plain paged read
// it replaced (a limit on each request), which etcd answers in time
// growing with the keys after the page: quadratic in n.
func BenchmarkScan(b *testing.B) {
	c := etcdtest.Start(b)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	for _, n := range []int{10_000, 100_000} {
		prefix := "/" + newPrefix("scanbench") + "/"
		var ops []clientv3.Op
		for i := range n {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%sk%07d", prefix, i), "a few bytes of value"))
			if len(ops) == 100 || i == n-1 {
				if _, err := cli.Txn(b.Context()).Then(ops...).Commit(); err != nil {
					b.Fatal(err)
				}
				ops = ops[:0]
			}
		}
		s := openBench(b, Config{Endpoints: c.Endpoints(), Prefix: newPrefix("unused"), SessionTTL: testTTL})
		b.Run(fmt.Sprintf("scan/keys=%d", n), func(b *testing.B) {
			for b.Loop() {
				got := 0
				if err := s.scan(b.Context(), prefix, 0, scanPage, func(string, []byte) error { got++; return nil }); err != nil || got != n {
					b.Fatalf("scan: %d keys, %v", got, err)
				}
			}
		})
		b.Run(fmt.Sprintf("paged-limit/keys=%d", n), func(b *testing.B) {
			end := clientv3.GetPrefixRangeEnd(prefix)
			for b.Loop() {
				got, from := 0, prefix
				for {
					r, err := cli.Get(b.Context(), from, clientv3.WithRange(end), clientv3.WithLimit(scanPage))
					if err != nil {
						b.Fatal(err)
					}
					got += len(r.Kvs)
					if !r.More || len(r.Kvs) == 0 {
						break
					}
					from = string(r.Kvs[len(r.Kvs)-1].Key) + "\x00"
				}
				if got != n {
					b.Fatalf("paged: %d keys", got)
				}
			}
		})
	}
}
