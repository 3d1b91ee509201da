package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// Close gives up the session's lease; CloseAway (for a caller that knows
// etcd is away) leaves it to its TTL, asking etcd nothing.
func TestCloseAwayLeavesTheLeaseToItsTTL(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := testCtx(t)
	watcher, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	mustDo(t, err)
	defer watcher.Close()
	for _, tc := range []struct {
		desc    string
		close   func(*Store) error
		revoked bool
	}{
		{"Close", (*Store).Close, true},
		{"CloseAway", (*Store).CloseAway, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			// A TTL far longer than the test, so that only a revoke ends it.
			s, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: newPrefix("away"), SessionTTL: time.Minute}, time.Second)
			mustDo(t, err)
			// The claim is held on the session's lease until the close.
			if _, ok, err := s.TryClaim(ctx, "renew/a"); err != nil || !ok {
				t.Fatalf("claim: %v, %v", ok, err)
			}
			s.mu.Lock()
			lease := s.sess.Lease()
			s.mu.Unlock()
			mustDo(t, tc.close(s))
			r, err := watcher.TimeToLive(ctx, lease)
			mustDo(t, err)
			if revoked := r.TTL <= 0; revoked != tc.revoked {
				t.Errorf("after %s the lease has TTL %d s; want revoked %v", tc.desc, r.TTL, tc.revoked)
			}
		})
	}
}

// A runtime write (serve's status) keeps its caller's deadline with etcd
// gone, where a change of the desired state, once begun, is finished or
// fails by the store's own bounds: a serve stopping as etcd goes away
// waits for its last status only as long as it bounded it.
func TestRuntimeWriteKeepsTheCallersDeadline(t *testing.T) {
	c := etcdtest.Start(t)
	s := openTest(t, c, newPrefix("away"))
	ctx := testCtx(t)
	mustDo(t, s.Write(ctx, "run/serve/status.json", []byte("{}"), state.SecretMode))
	c.Stop(0)

	const bound = 200 * time.Millisecond
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Write(wctx, "run/serve/status.json", []byte(`{"stopping":true}`), state.SecretMode) }()
	select {
	case err := <-done:
		if !errors.Is(err, state.ErrUnreachable) {
			t.Errorf("runtime write with etcd gone = %v; want unreachable", err)
		}
	case <-time.After(commitTimeout / 2):
		// Far past bound, short of the commit timeout the write ignored
		// its caller's deadline for.
		t.Fatalf("a runtime write bounded at %s did not return in %s with etcd gone", bound, commitTimeout/2)
	}
}
