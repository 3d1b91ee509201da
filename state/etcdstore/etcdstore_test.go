package etcdstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// testTTL is the shortest lease etcd grants with its default timing.
const testTTL = 2 * time.Second

var prefixes atomic.Int64

// newPrefix is a prefix no other test of the process uses.
func newPrefix(name string) string { return fmt.Sprintf("%s/%d", name, prefixes.Add(1)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openTest opens a store on c under prefix with short timeouts.
func openTest(t *testing.T, c *etcdtest.Cluster, prefix string) *Store {
	t.Helper()
	s, err := Open(testCtx(t), Config{Endpoints: c.Endpoints(), Prefix: prefix, SessionTTL: testTTL}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
