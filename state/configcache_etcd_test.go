package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/etcdstore"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// On etcd the token is the store's Revision: a change made through
// another client (another replica, the CLI) is seen by the next Load, and
// with nothing changed the kept config is returned again.
func TestConfigCacheOnEtcd(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := context.Background()
	open := func() *etcdstore.Store {
		s, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: c.Endpoints(), Prefix: "cache"}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	served, cli := open(), open()
	if _, err := state.AddListener(ctx, cli, state.Listener{Name: "web", Addr: "127.0.0.1:8443"}); err != nil {
		t.Fatal(err)
	}
	cache := state.NewConfigCache(t.Context(), served)
	load := func() *state.Config {
		t.Helper()
		cfg, err := cache.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first := load()
	if again := load(); again != first {
		t.Fatal("a second Load with nothing changed loaded again")
	}
	for _, id := range []string{"a", "b"} {
		if err := state.Update(ctx, cli, "mapping add", func(tx *state.Tx) error {
			tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, ok := load().Mapping(id); !ok {
			t.Fatalf("the Load after mapping %s was added does not have it", id)
		}
	}
}
