package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// fakeOrders stands in for the ACME server: each order waits for release
// (or its context), counts how many run at once, and returns a
// certificate for the mapping's hosts, or fail's error.
type fakeOrders struct {
	release chan struct{} // closed: orders finish
	started chan string   // receives each mapping id as its order starts
	fail    error
	delay   time.Duration // each order takes at least this long
	gather  int32         // the first orders wait (up to 10 s) until this many run

	running, most, total atomic.Int32
}

func useFakeOrders(t *testing.T) *fakeOrders {
	f := &fakeOrders{release: make(chan struct{}), started: make(chan string, 1000)}
	old := orderFunc
	orderFunc = f.order
	t.Cleanup(func() { orderFunc = old })
	return f
}

func (f *fakeOrders) order(ctx context.Context, _ state.Store, _ *state.Config, m state.Mapping, _ *x509.Certificate, now time.Time, _ *Options) (*pki.KeyPair, time.Time, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	f.total.Add(1)
	for {
		most := f.most.Load()
		if n <= most || f.most.CompareAndSwap(most, n) {
			break
		}
	}
	f.started <- m.ID
	if f.total.Load() <= f.gather {
		for deadline := time.Now().Add(10 * time.Second); f.running.Load() < f.gather && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(f.delay)
	select {
	case <-f.release:
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	}
	if f.fail != nil {
		return nil, time.Time{}, f.fail
	}
	kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now, 90*24*time.Hour)
	return kp, now.Add(60 * 24 * time.Hour), err
}

// waitStarted waits for n orders to start.
func (f *fakeOrders) waitStarted(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.started:
		case <-time.After(30 * time.Second):
			t.Fatal("orders did not start")
		}
	}
}

// claimState is a Dir with a listener and ACME mappings m0…m(n-1).
func claimState(t *testing.T, n int) *state.Dir {
	t.Helper()
	ctx := context.Background()
	d := state.OpenDir(t.TempDir(), 10*time.Second)
	if _, err := state.AddListener(ctx, d, state.Listener{Name: "web", Addr: ":8443", HTTPAddr: ":8080"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := state.Mapping{ID: fmt.Sprintf("m%d", i), Listener: "web", Hosts: []string{fmt.Sprintf("m%d.example.test", i)}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
		if _, _, err := mappings.Add(ctx, d, mappings.Input{Mapping: m}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestOneOrderPerMapping: two issuances of one mapping at once make one
// order; the second is skipped as busy (Locked: exit 3, API 503), writes
// nothing and is no attempt.
func TestOneOrderPerMapping(t *testing.T) {
	f := useFakeOrders(t)
	d := claimState(t, 1)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- Issue(ctx, d, "m0", time.Now(), quiet) }()
	f.waitStarted(t, 1)
	err := Issue(ctx, d, "m0", time.Now(), quiet)
	if !Busy(err) || Attempted(err) || fault.KindOf(err) != fault.Locked {
		t.Errorf("second issuance at once: %v (busy %v); want busy, Locked", err, Busy(err))
	}
	close(f.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if f.total.Load() != 1 {
		t.Errorf("%d orders, want 1", f.total.Load())
	}
	if _, err := mappings.Load(ctx, d, state.Mapping{ID: "m0", Source: state.SourceACME}); err != nil {
		t.Errorf("the first order's certificate: %v", err)
	}
}

// TestOrderRunsOutsideTheLock: while an order runs, a change of the state
// (a mapping added) completes: the lock is not held.
func TestOrderRunsOutsideTheLock(t *testing.T) {
	f := useFakeOrders(t)
	d := claimState(t, 1)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- Issue(ctx, d, "m0", time.Now(), quiet) }()
	f.waitStarted(t, 1)
	added := make(chan error, 1)
	go func() {
		_, _, err := mappings.Add(ctx, d, mappings.Input{Mapping: state.Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.test"}, Source: state.SourceSelfSigned}}, time.Now())
		added <- err
	}()
	select {
	case err := <-added:
		if err != nil {
			t.Errorf("mapping add during an order: %v", err)
		}
	case <-time.After(8 * time.Second): // the lock timeout is 10 s
		t.Error("mapping add waited for the order: the lock is held during it")
	}
	close(f.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCommitChecksAgain: what changed while an order ran decides whether
// its result is written: the mapping edited in what the certificate is
// for, or removed, or another certificate put in place: nothing is
// written (a failure is not recorded either). An edit of what the
// certificate does not depend on (the upstream) keeps the result.
func TestCommitChecksAgain(t *testing.T) {
	ctx := context.Background()
	edit := func(fn func(m *state.Mapping)) func(t *testing.T, d *state.Dir) {
		return func(t *testing.T, d *state.Dir) {
			err := state.Update(ctx, d, "test edit", func(tx *state.Tx) error {
				m, _ := tx.Config.Mapping("m0")
				fn(m)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		desc    string
		during  func(t *testing.T, d *state.Dir)
		fail    bool
		written bool
	}{
		{desc: "hosts edited", during: edit(func(m *state.Mapping) { m.Hosts = []string{"other.example.test"} })},
		{desc: "profile edited", during: edit(func(m *state.Mapping) { m.Profile = "shortlived" })},
		{desc: "hosts edited, order failed", during: edit(func(m *state.Mapping) { m.Hosts = []string{"other.example.test"} }), fail: true},
		{desc: "removed", during: func(t *testing.T, d *state.Dir) {
			if _, err := mappings.Remove(ctx, d, "m0"); err != nil {
				t.Fatal(err)
			}
		}},
		{desc: "another certificate put in place", during: func(t *testing.T, d *state.Dir) {
			kp, err := pki.SelfSigned(pki.ParseNames([]string{"m0.example.test"}), time.Now(), 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			err = state.Update(ctx, d, "test cert", func(tx *state.Tx) error {
				return mappings.WriteCertificate(ctx, tx, "m0", kp, mappings.Meta{Source: state.SourceACME, FingerprintSHA256: pki.Fingerprint(kp.Cert)})
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{desc: "upstream edited", during: edit(func(m *state.Mapping) { m.Upstream = "http://127.0.0.1:9" }), written: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			f := useFakeOrders(t)
			if tc.fail {
				f.fail = errors.New("the CA said no")
			}
			d := claimState(t, 1)
			done := make(chan error, 1)
			go func() { done <- Issue(ctx, d, "m0", time.Now(), quiet) }()
			f.waitStarted(t, 1)
			tc.during(t, d)
			before := mustFiles(t, d)
			close(f.release)
			err := <-done
			after := mustFiles(t, d)
			if tc.written {
				if err != nil || after["certs/public/m0/cert.pem"] == before["certs/public/m0/cert.pem"] {
					t.Errorf("result not written: %v", err)
				}
				return
			}
			if err != nil || Attempted(err) {
				t.Errorf("dropped result: %v, want nil", err)
			}
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("a dropped result wrote:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// mustFiles is the content of d's certificate files of m0, by name.
func mustFiles(t *testing.T, d *state.Dir) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range []string{"certs/public/m0/cert.pem", "certs/public/m0/key.pem", "certs/public/m0/meta.toml", "mappings/m0.toml"} {
		b, err := d.Read(context.Background(), n)
		if err == nil {
			out[n] = string(b)
		}
	}
	return out
}

// TestRenewBoundedConcurrency: a renewal run with ten due mappings makes
// at most Concurrency orders at once (and more than one), reports in the
// order of the config, and calls Attempted one at a time.
func TestRenewBoundedConcurrency(t *testing.T) {
	f := useFakeOrders(t)
	close(f.release)
	d := claimState(t, 10)
	var inCall, overlap atomic.Int32
	var mu sync.Mutex
	var seen []string
	o := RenewOptions{Options: quiet}
	o.Concurrency = 3
	o.Attempted = func(id string, err error) {
		if inCall.Add(1) > 1 {
			overlap.Add(1)
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		seen = append(seen, id)
		mu.Unlock()
		inCall.Add(-1)
	}
	f.delay, f.gather = 10*time.Millisecond, 3 // so that orders overlap
	r, err := Renew(context.Background(), d, time.Now, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}
	if fmt.Sprint(r.Renewed) != fmt.Sprint(want) || len(r.Failed) != 0 {
		t.Errorf("renewed %v failed %v; want %v in order", r.Renewed, r.Failed, want)
	}
	if most := f.most.Load(); most != 3 {
		t.Errorf("at most %d orders at once; want 3 (Concurrency 3)", most)
	}
	if overlap.Load() != 0 || len(seen) != 10 {
		t.Errorf("Attempted: %d overlapping calls, %d calls; want 0 and 10", overlap.Load(), len(seen))
	}
}

// TestRenewCancelEndsEveryOrder: ending the context ends every order in
// flight at once; none is recorded as an attempt and no further one
// starts.
func TestRenewCancelEndsEveryOrder(t *testing.T) {
	f := useFakeOrders(t)
	d := claimState(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	o := RenewOptions{Options: quiet}
	o.Concurrency = 4
	type result struct {
		r   *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := Renew(ctx, d, time.Now, o)
		done <- result{r, err}
	}()
	f.waitStarted(t, 4)
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("orders went on after the context ended")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if f.total.Load() != 4 || len(res.r.Renewed)+len(res.r.Failed) != 0 {
		t.Errorf("%d orders, report %+v; want 4 and nothing renewed or failed", f.total.Load(), res.r)
	}
	for i := range 10 {
		meta, _ := mappings.LoadMeta(context.Background(), d, fmt.Sprintf("m%d", i))
		if meta.Attempts != 0 || meta.LastError != "" {
			t.Errorf("m%d: a cancelled order was recorded: %+v", i, meta)
		}
	}
}

// TestRenewHooksInConfigOrder: with orders at once finishing in another
// order (the first one last), the deploy hooks still run one at a time in
// the order of p2ptls.toml.
func TestRenewHooksInConfigOrder(t *testing.T) {
	f := useFakeOrders(t)
	close(f.release)
	d := claimState(t, 4)
	slow := orderFunc
	orderFunc = func(ctx context.Context, s state.Store, cfg *state.Config, m state.Mapping, r *x509.Certificate, now time.Time, o *Options) (*pki.KeyPair, time.Time, error) {
		if m.ID == "m0" {
			time.Sleep(300 * time.Millisecond)
		}
		return slow(ctx, s, cfg, m, r, now, o)
	}
	out := t.TempDir() + "/hooks"
	o := RenewOptions{Options: quiet, DeployHook: `echo "start $P2PTLS_MAPPING_ID" >> ` + out + `; sleep 0.05; echo "end $P2PTLS_MAPPING_ID" >> ` + out}
	o.Concurrency = 4
	r, err := Renew(context.Background(), d, time.Now, o)
	if err != nil || len(r.Renewed) != 4 || len(r.HookFailed) != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	want := "start m0\nend m0\nstart m1\nend m1\nstart m2\nend m2\nstart m3\nend m3\n"
	if got := string(mustReadFile(t, out)); got != want {
		t.Errorf("hooks ran\n%s\nwant\n%s", got, want)
	}
}

// TestRenewLooksAgainAtABusyMapping: a renewal that finds a mapping's
// claim held elsewhere skips it and says to look again after BusyRetry,
// so that an order whose issuer died is taken over (serve wakes at Next).
func TestRenewLooksAgainAtABusyMapping(t *testing.T) {
	f := useFakeOrders(t)
	close(f.release)
	d := claimState(t, 2)
	ctx := context.Background()
	release, ok, err := state.ClaimLocal(ctx, d, claimName("m0"))
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	r, err := Renew(ctx, d, func() time.Time { return now }, RenewOptions{Options: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Renewed, r.Skipped) != "[m1] [m0]" || r.Reasons["m0"] != "being issued by another process" {
		t.Errorf("renewed %v skipped %v reasons %v; want m1 renewed, m0 skipped as busy", r.Renewed, r.Skipped, r.Reasons)
	}
	if want := now.Add(BusyRetry); !r.Next.Equal(want) {
		t.Errorf("next look %v, want %v (BusyRetry after now)", r.Next, want)
	}
	release()
	r, err = Renew(ctx, d, func() time.Time { return now.Add(BusyRetry) }, RenewOptions{Options: quiet})
	if err != nil || fmt.Sprint(r.Renewed) != "[m0]" {
		t.Errorf("once the claim is free: renewed %v (%v); want m0", r.Renewed, err)
	}
	if f.total.Load() != 2 {
		t.Errorf("%d orders, want 2", f.total.Load())
	}
}
