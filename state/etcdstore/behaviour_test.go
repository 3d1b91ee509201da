package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// rawClient is a plain client of c, for looking under the store.
func rawClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// keys returns every key and value under prefix (the store's whole
// content, its lock and staging included).
func keys(t *testing.T, cli *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	return kvMap(t, cli, "/"+prefix+"/", clientv3.WithPrefix())
}

// kvMap returns the keys and values a Get of key with opts finds.
func kvMap(t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) map[string]string {
	t.Helper()
	r, err := cli.Get(testCtx(t), key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range r.Kvs {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// locked runs fn under s's lock.
func locked(t *testing.T, s *Store, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx := testCtx(t)
	unlock, err := s.Lock(ctx, "test")
	if err != nil {
		return err
	}
	return errors.Join(fn(ctx), unlock())
}

func TestOversizeValueRefused(t *testing.T) {
	c := etcdtest.Start(t)
	cli := rawClient(t, c)
	prefix := newPrefix("big")
	s := openTest(t, c, prefix)
	ctx := testCtx(t)
	mustDo(t, s.Write(ctx, "certs/m/cert.pem", []byte("small"), state.PublicMode))
	before := keys(t, cli, prefix)
	big := make([]byte, MaxValue+1)
	err := s.Write(ctx, "certs/m/huge.pem", big, state.PublicMode)
	statetest.WantFault(t, err, fault.Invalid, "certs/m/huge.pem", "1 MiB")
	err = s.Apply(ctx, state.Change{Deletes: []string{"certs/m"}, Writes: []state.FileWrite{
		{Name: "certs/n/a.pem", Data: []byte("a"), Perm: state.PublicMode},
		{Name: "certs/n/huge.pem", Data: big, Perm: state.PublicMode},
	}})
	statetest.WantFault(t, err, fault.Invalid, "certs/n/huge.pem")
	_, err = s.Replace(ctx, func(st state.Staging) error {
		w, err := st.Create("certs/huge.pem", state.SecretMode)
		if err != nil {
			return err
		}
		_, err = w.Write(big)
		return errors.Join(err, w.Close())
	}, state.ReplaceOptions{})
	statetest.WantFault(t, err, fault.Invalid, "certs/huge.pem")
	statetest.AssertSame(t, before, keys(t, cli, prefix))
	// Exactly the limit fits.
	mustDo(t, s.Write(ctx, "certs/m/limit.pem", big[:MaxValue], state.PublicMode))
}

// records is a change writing n record files of about 300 bytes.
func records(n int, version string) state.Change {
	var c state.Change
	for i := range n {
		c.Writes = append(c.Writes, state.FileWrite{
			Name: fmt.Sprintf("records/m%05d.toml", i),
			Data: []byte(version + strings.Repeat("r", 300)),
			Perm: state.SecretMode,
		})
	}
	return c
}

func TestLargeApplyIsAtomicToReaders(t *testing.T) {
	c := etcdtest.Start(t)
	prefix := newPrefix("large")
	s := openTest(t, c, prefix)
	reader := openTest(t, c, prefix)
	ctx := testCtx(t)
	mustDo(t, s.Write(ctx, "certs/old/cert.pem", []byte("old"), state.PublicMode))
	const n = 2000
	change := records(n, "v1")
	change.Deletes = []string{"certs/old"}
	feed := reader.WatchChanges(ctx)

	var done atomic.Bool
	var wg sync.WaitGroup
	var sawNew atomic.Bool
	var reads atomic.Int64
	wg.Go(func() {
		for !done.Load() && ctx.Err() == nil {
			names, err := reader.List(ctx, "records")
			if err != nil {
				t.Errorf("list: %v", err)
				return
			}
			_, oldErr := reader.Read(ctx, "certs/old/cert.pem")
			switch len(names) {
			case 0:
				if sawNew.Load() {
					t.Error("the old state came back after the new one was seen")
					return
				}
			case n:
				sawNew.Store(true)
				if !errors.Is(oldErr, fs.ErrNotExist) {
					t.Errorf("after the new records, certs/old is still there: %v", oldErr)
					return
				}
			default:
				t.Errorf("a reader saw %d of %d records: half a change", len(names), n)
				return
			}
			reads.Add(1)
		}
	})
	mustDo(t, locked(t, s, func(ctx context.Context) error { return s.Apply(ctx, change) }))
	// The reader goes on until it has seen the new state.
	deadline := time.Now().Add(30 * time.Second)
	for !sawNew.Load() && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
	if !sawNew.Load() {
		t.Fatal("the reader never saw the new state")
	}
	t.Logf("%d consistent reads", reads.Load())
	b, err := reader.Read(ctx, "records/m01999.toml")
	if err != nil || !strings.HasPrefix(string(b), "v1") {
		t.Fatalf("last record = %.10q, %v", b, err)
	}
	// 2,001 names is more than a feed holds: the watcher is told Full,
	// once the change is whole.
	select {
	case <-feed.C:
	case <-time.After(10 * time.Second):
		t.Fatal("no watch signal for the large change")
	}
	if got := feed.Take(); !got.Full && len(got.Names) < n {
		t.Errorf("feed after the large change: %d names, full %v", len(got.Names), got.Full)
	}
	if k := keys(t, rawClient(t, c), prefix); k["/"+prefix+"/v1/pending"] != "" || hasPrefix(k, "/"+prefix+"/v1/staging/") {
		t.Error("pending or staged values left after the change")
	}
}

func hasPrefix(m map[string]string, p string) bool {
	for k := range m {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// TestLargeApplyAfterACrash cuts a large change at each step, as a
// process killed there would (its lease ends; it never unlocks), and
// checks that readers see the old state until the next Lock, which rolls
// a pending change forward and drops one that was only staged.
func TestLargeApplyAfterACrash(t *testing.T) {
	c := etcdtest.Start(t)
	cli := rawClient(t, c)
	for _, step := range []string{"staged", "pending", "applied"} {
		t.Run(step, func(t *testing.T) {
			prefix := newPrefix("crash")
			dying := openTest(t, c, prefix)
			ctx := testCtx(t)
			mustDo(t, dying.Write(ctx, "records/m00000.toml", []byte("v0"), state.SecretMode))
			mustDo(t, dying.Write(ctx, "certs/old/cert.pem", []byte("old"), state.PublicMode))
			change := records(500, "v1")
			change.Deletes = []string{"certs/old"}
			crashAt = func(at string) error {
				if at == step {
					return errors.New("killed at " + at)
				}
				return nil
			}
			defer func() { crashAt = nil }()
			_, err := dying.Lock(ctx, "import")
			mustDo(t, err)
			if err := dying.Apply(ctx, change); err == nil || !strings.Contains(err.Error(), "killed at") {
				t.Fatalf("apply = %v, want the simulated crash", err)
			}
			crashAt = nil
			mustDo(t, dying.Close()) // the lease ends: as a dead process's would

			next := openTest(t, c, prefix)
			b, err := next.Read(ctx, "records/m00000.toml")
			if err != nil || string(b) != "v0" {
				t.Fatalf("before recovery the reader sees %q, %v; want the old state", b, err)
			}
			if names, _ := next.List(ctx, "records"); len(names) != 1 {
				t.Fatalf("before recovery the reader lists %d records, want 1", len(names))
			}
			mustDo(t, locked(t, next, func(context.Context) error { return nil }))
			names, err := next.List(ctx, "records")
			mustDo(t, err)
			_, oldErr := next.Read(ctx, "certs/old/cert.pem")
			if step == "staged" {
				if len(names) != 1 || oldErr != nil {
					t.Errorf("a change that never became pending: %d records, certs/old %v; want it undone", len(names), oldErr)
				}
			} else {
				b, _ := next.Read(ctx, "records/m00499.toml")
				if len(names) != 500 || !errors.Is(oldErr, fs.ErrNotExist) || !strings.HasPrefix(string(b), "v1") {
					t.Errorf("a pending change after recovery: %d records, certs/old %v, last %.4q; want all of it", len(names), oldErr, b)
				}
			}
			if k := keys(t, cli, prefix); k["/"+prefix+"/v1/pending"] != "" || hasPrefix(k, "/"+prefix+"/v1/staging/") {
				t.Error("pending or staged values left after recovery")
			}
		})
	}
}

func TestLockFreedWhenItsHolderDies(t *testing.T) {
	c := etcdtest.Start(t)
	cli := rawClient(t, c)
	for _, how := range []string{"lease revoked", "keep-alive stopped"} {
		t.Run(how, func(t *testing.T) {
			prefix := newPrefix("dies")
			holder := openTest(t, c, prefix)
			ctx := testCtx(t)
			_, err := holder.Lock(ctx, "cert renew")
			mustDo(t, err)
			waiter := openTest(t, c, prefix)
			_, err = waiter.Lock(ctx, "mapping add")
			statetest.WantFault(t, err, fault.Locked, fmt.Sprintf("pid %d", os.Getpid()), "(cert renew)")
			statetest.WantHint(t, err, "--lock-timeout")

			holder.mu.Lock()
			sess := holder.sess
			holder.mu.Unlock()
			if how == "lease revoked" {
				_, err = cli.Revoke(ctx, sess.Lease())
				mustDo(t, err)
			} else {
				sess.Orphan() // a process frozen: no more keep-alives
			}
			waiter.wait = 3 * testTTL
			unlock, err := waiter.Lock(ctx, "mapping add")
			mustDo(t, err)
			// The dead holder's late write is refused and changes nothing.
			err = holder.Write(ctx, "p2ptls.toml", []byte("late"), state.SecretMode)
			if !errors.Is(err, errLost) {
				t.Errorf("write under a lost lock = %v, want it refused", err)
			}
			if _, err := waiter.Read(ctx, "p2ptls.toml"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the late write landed: %v", err)
			}
			mustDo(t, unlock())
		})
	}
}

func TestTwoWritersLoseNoUpdate(t *testing.T) {
	c := etcdtest.Start(t)
	prefix := newPrefix("writers")
	const each = 15
	var wg sync.WaitGroup
	for range 2 {
		s := openTest(t, c, prefix)
		s.wait = time.Minute
		wg.Go(func() {
			for range each {
				err := locked(t, s, func(ctx context.Context) error {
					b, err := s.Read(ctx, "counter")
					if err != nil && !errors.Is(err, fs.ErrNotExist) {
						return err
					}
					n, _ := strconv.Atoi(string(b))
					return s.Apply(ctx, state.Change{Writes: []state.FileWrite{{Name: "counter", Data: []byte(strconv.Itoa(n + 1)), Perm: state.SecretMode}}})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b, err := openTest(t, c, prefix).Read(testCtx(t), "counter")
	mustDo(t, err)
	if string(b) != strconv.Itoa(2*each) {
		t.Fatalf("counter = %s, want %d", b, 2*each)
	}
}

// TestStalledClaimantCannotOverwrite: a process whose claim expired while
// it worked (its lease revoked) finds its result refused, and the newer
// certificate of the next claimant stays.
func TestStalledClaimantCannotOverwrite(t *testing.T) {
	c := etcdtest.Start(t)
	cli := rawClient(t, c)
	prefix := newPrefix("claims")
	stalled := openTest(t, c, prefix)
	next := openTest(t, c, prefix)
	ctx := testCtx(t)
	release, ok, err := stalled.TryClaim(ctx, "issue m1")
	if err != nil || !ok {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	defer release()
	if _, ok, err := next.TryClaim(ctx, "issue m1"); err != nil || ok {
		t.Fatalf("claim held by another process = %v, %v; want refused", ok, err)
	}
	stalled.mu.Lock()
	lease := stalled.sess.Lease()
	stalled.mu.Unlock()
	_, err = cli.Revoke(ctx, lease) // the stall outlived the lease
	mustDo(t, err)

	releaseNext, ok, err := next.TryClaim(ctx, "issue m1")
	if err != nil || !ok {
		t.Fatalf("claim after the holder's lease ended: %v %v", ok, err)
	}
	cert := func(v string) state.Change {
		return state.Change{Writes: []state.FileWrite{{Name: "certs/public/m1/cert.pem", Data: []byte(v), Perm: state.PublicMode}}}
	}
	mustDo(t, locked(t, next, func(ctx context.Context) error { return next.Apply(ctx, cert("newer")) }))
	releaseNext()

	err = locked(t, stalled, func(ctx context.Context) error { return stalled.Apply(ctx, cert("stale")) })
	if !errors.Is(err, errLost) {
		t.Fatalf("the stalled claimant's write = %v, want it refused", err)
	}
	b, err := next.Read(ctx, "certs/public/m1/cert.pem")
	if err != nil || string(b) != "newer" {
		t.Fatalf("cert = %q, %v; want the newer one", b, err)
	}
	// Runtime writes (serve's status) are not held up by the lost claim;
	// once it lets the claim go, its changes are accepted again.
	mustDo(t, stalled.Write(ctx, state.RunDir+"/status.json", []byte("{}"), state.SecretMode))
	release()
	mustDo(t, locked(t, stalled, func(ctx context.Context) error { return stalled.Apply(ctx, cert("newest")) }))
}

// TestLeaderLossMidChange stops the leader of three members while a
// writer makes changes of two files and a large change: every change
// acknowledged is there afterwards, and none is there by half.
func TestLeaderLossMidChange(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	prefix := newPrefix("leader")
	s := openTest(t, c, prefix)
	s.wait = 30 * time.Second
	ctx := testCtx(t)
	pair := func(v int) state.Change {
		d := []byte(strconv.Itoa(v))
		return state.Change{Writes: []state.FileWrite{{Name: "a", Data: d, Perm: state.SecretMode}, {Name: "b", Data: d, Perm: state.SecretMode}}}
	}
	acked := 0
	var large error
	stopped := false
	for v := 1; v <= 40; v++ {
		if v == 10 {
			lead := c.Leader()
			if lead < 0 {
				t.Fatal("no leader")
			}
			c.Stop(lead)
			stopped = true
		}
		if v == 20 {
			large = locked(t, s, func(ctx context.Context) error { return s.Apply(ctx, records(400, "big")) })
		}
		if err := locked(t, s, func(ctx context.Context) error { return s.Apply(ctx, pair(v)) }); err == nil {
			acked = v
		} else {
			t.Logf("change %d: %v", v, err)
		}
	}
	if !stopped || acked < 30 {
		t.Fatalf("only changes up to %d acknowledged", acked)
	}
	a, errA := s.Read(ctx, "a")
	b, errB := s.Read(ctx, "b")
	// A change whose answer was lost may have been made: at least the
	// last acknowledged one is there, and a and b always agree.
	got, _ := strconv.Atoi(string(a))
	if errA != nil || errB != nil || string(a) != string(b) || got < acked {
		t.Fatalf("a=%q b=%q (%v %v), want both at least %d", a, b, errA, errB, acked)
	}
	names, err := s.List(ctx, "records")
	mustDo(t, err)
	if (large == nil && len(names) != 400) || (len(names) != 0 && len(names) != 400) {
		t.Fatalf("large change (err %v): %d of 400 records", large, len(names))
	}
}

// TestCachedReadsFollowOtherWriters: a store whose List cached a
// directory's values reads another process's change of one of them once
// its feed says so, and at once under the lock.
func TestCachedReadsFollowOtherWriters(t *testing.T) {
	c := etcdtest.Start(t)
	prefix := newPrefix("cache")
	reader := openTest(t, c, prefix)
	writer := openTest(t, c, prefix)
	ctx := testCtx(t)
	mustDo(t, locked(t, writer, func(ctx context.Context) error { return writer.Apply(ctx, records(50, "v1")) }))
	feed := reader.WatchChanges(ctx)
	for v := 2; v <= 20; v++ {
		names, err := reader.List(ctx, "records")
		if err != nil || len(names) != 50 {
			t.Fatalf("list: %d, %v", len(names), err)
		}
		want := fmt.Sprintf("v%d", v)
		change := state.Change{Writes: []state.FileWrite{{Name: "records/m00007.toml", Data: []byte(want), Perm: state.SecretMode}}}
		mustDo(t, locked(t, writer, func(ctx context.Context) error { return writer.Apply(ctx, change) }))
		if v%2 == 0 {
			// Under the lock: what the last holder wrote, whatever the
			// watch has delivered.
			err = locked(t, reader, func(ctx context.Context) error {
				b, err := reader.Read(ctx, "records/m00007.toml")
				if err == nil && string(b) != want {
					err = fmt.Errorf("read under the lock = %q, want %q", b, want)
				}
				return err
			})
			mustDo(t, err)
			continue
		}
		deadline := time.After(10 * time.Second)
		for got := false; !got; {
			select {
			case <-feed.C:
			case <-deadline:
				t.Fatal("no signal for the change")
			}
			got = slices.Contains(feed.Take().Names, "records/m00007.toml")
		}
		b, err := reader.Read(ctx, "records/m00007.toml")
		if err != nil || string(b) != want {
			t.Fatalf("read after the signal = %q, %v; want %q", b, err, want)
		}
	}
	// The reader's own writes are read back at once.
	for v := range 10 {
		want := fmt.Sprintf("own%d", v)
		mustDo(t, reader.Write(ctx, "records/m00003.toml", []byte(want), state.SecretMode))
		if b, err := reader.Read(ctx, "records/m00003.toml"); err != nil || string(b) != want {
			t.Fatalf("read after own write = %q, %v", b, err)
		}
		if _, err := reader.List(ctx, "records"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChallengesVanishWithTheirWriter: ACME challenge answers are put on
// the writer's session lease: when the writer dies (its lease ends) they
// are gone, while its other runtime files and the desired state stay. A
// writer whose lease etcd no longer has writes on a new one.
func TestChallengesVanishWithTheirWriter(t *testing.T) {
	c := etcdtest.Start(t)
	cli := rawClient(t, c)
	prefix := newPrefix("challenges")
	ctx := testCtx(t)
	writer := openTest(t, c, prefix)
	reader := openTest(t, c, prefix)
	token := state.HTTP01Dir + "/tok"
	alpn := state.TLSALPN01Dir + "/x.example.test.pem"
	mustDo(t, writer.Write(ctx, token, []byte("tok.key"), state.SecretMode))
	mustDo(t, writer.Write(ctx, alpn, []byte("pem"), state.SecretMode))
	mustDo(t, writer.Write(ctx, state.RunDir+"/status.json", []byte("{}"), state.SecretMode))
	mustDo(t, locked(t, writer, func(ctx context.Context) error {
		return writer.Write(ctx, "p2ptls.toml", []byte("schema_version = 2\n"), state.SecretMode)
	}))
	if b, err := reader.Read(ctx, token); err != nil || string(b) != "tok.key" {
		t.Fatalf("another store reads the answer: %q %v", b, err)
	}
	writer.mu.Lock()
	sess := writer.sess
	writer.mu.Unlock()
	_, err := cli.Revoke(ctx, sess.Lease()) // as when the writer is killed and its lease expires
	mustDo(t, err)
	for _, name := range []string{token, alpn} {
		if _, err := reader.Read(ctx, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after its writer's lease ended: %v, want it gone", name, err)
		}
	}
	for _, name := range []string{state.RunDir + "/status.json", "p2ptls.toml"} {
		if _, err := reader.Read(ctx, name); err != nil {
			t.Errorf("%s after the writer's lease ended: %v, want it kept", name, err)
		}
	}
	// The writer publishes again on a new lease.
	mustDo(t, writer.Write(ctx, token, []byte("tok.key2"), state.SecretMode))
	if b, err := reader.Read(ctx, token); err != nil || string(b) != "tok.key2" {
		t.Errorf("an answer written after the lease ended: %q %v", b, err)
	}
}
