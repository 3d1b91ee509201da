package renewal

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock is a Clock whose time moves only when a test says so. It
// holds the loop's one timer at a time; wait blocks until one is armed,
// which is when the loop sleeps.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	timer *fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	// Whole seconds: meta.toml keeps times to the second.
	return &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
	} else {
		f.timer = t
	}
	return t.c, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.timer == t {
			f.timer = nil
		}
	}
}

// sleeping waits until the loop sleeps, and returns until when.
func (f *fakeClock) sleeping(t *testing.T) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		timer := f.timer
		f.mu.Unlock()
		if timer != nil {
			return timer.at
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the loop never went to sleep")
	return time.Time{}
}

// advance moves the time to at and fires the timer if it is due.
func (f *fakeClock) advance(at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = at
	if f.timer != nil && !at.Before(f.timer.at) {
		f.timer.c <- at
		f.timer = nil
	}
}

// loop is Run over a store with a fake clock, recording passes and
// Observe's calls.
type loop struct {
	clock    *fakeClock
	store    *state.Dir
	passes   chan string
	observed chan observed
	logs     syncBuffer
}

type observed struct {
	id  string
	err error
}

func startLoop(t *testing.T, store *state.Dir, clock *fakeClock, panics bool) *loop {
	l := &loop{clock: clock, store: store, passes: make(chan string, 64), observed: make(chan observed, 64)}
	testHook = func(kind string) {
		select {
		case l.passes <- kind:
		default:
			panic("the test reads no passes")
		}
		if panics {
			panic("injected panic in the renewal loop")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Store: store, Log: slog.New(slog.NewTextHandler(&l.logs, nil)), Clock: l.clock,
			Observe: func(id string, err error) { l.observed <- observed{id, err} }})
	}()
	t.Cleanup(func() { cancel(); <-done; testHook = nil })
	return l
}

// pass waits for a pass of kind ("full" or "prompt"), skipping others.
func (l *loop) pass(t *testing.T, kind, what string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case k := <-l.passes:
			if k == kind {
				return
			}
		case <-timeout:
			t.Fatalf("no %s pass %s", kind, what)
		}
	}
}

// noFullPass checks that no full pass ran by now.
func (l *loop) noFullPass(t *testing.T, what string) {
	t.Helper()
	for {
		select {
		case k := <-l.passes:
			if k == "full" {
				t.Fatalf("a full pass ran %s", what)
			}
		default:
			return
		}
	}
}

func (l *loop) attempt(t *testing.T, id, what string) observed {
	t.Helper()
	select {
	case o := <-l.observed:
		if o.id != id {
			t.Fatalf("%s: Observe(%q, %v), want mapping %s", what, o.id, o.err, id)
		}
		return o
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no attempt observed", what)
		return observed{}
	}
}

func (l *loop) noAttempt(t *testing.T, what string) {
	t.Helper()
	select {
	case o := <-l.observed:
		t.Fatalf("%s: Observe(%q, %v), want no attempt", what, o.id, o.err)
	default:
	}
}

func newStore(t *testing.T) *state.Dir {
	store := state.OpenDir(filepath.Join(t.TempDir(), "state"), 5*time.Second)
	err := state.Update(context.Background(), store, "test", func(tx *state.Tx) error {
		tx.Config.Listeners = append(tx.Config.Listeners, state.Listener{Name: "web", Addr: "127.0.0.1:20443"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// addACME adds ACME mapping id, with a certificate made at made (see
// pki.SelfSigned) valid for lifetime when lifetime > 0, and returns it.
// The state has no ACME account: each order fails at once and is
// recorded, as an unreachable server's would.
func addACME(t *testing.T, store state.Store, id string, made time.Time, lifetime time.Duration) (cert *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	m := state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceACME, Challenge: state.ChallengeTLSALPN01}
	err := state.Update(ctx, store, "test", func(tx *state.Tx) error {
		tx.Config.Mappings = append(tx.Config.Mappings, m)
		if lifetime == 0 {
			return nil
		}
		kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), made, lifetime)
		if err != nil {
			return err
		}
		cert = kp.Cert
		return mappings.WriteCertificate(ctx, tx, id, kp, mappings.Meta{Source: state.SourceACME, FingerprintSHA256: pki.Fingerprint(kp.Cert)})
	})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// A full pass runs at start, and with nothing due the loop sleeps 10
// minutes, not the 6 hours before its first look it had.
func TestFullPassAtStartThenEveryTenMinutes(t *testing.T) {
	store := newStore(t)
	clock := newFakeClock()
	addACME(t, store, "fresh", clock.Now().Add(-time.Hour), 90*24*time.Hour)
	l := startLoop(t, store, clock, false)
	l.pass(t, "full", "at start")
	for i := range 3 {
		at := l.clock.sleeping(t)
		if d := at.Sub(l.clock.Now()); d != maxSleep {
			t.Fatalf("pass %d: sleeps %v with nothing due, want %v", i+1, d, maxSleep)
		}
		l.clock.advance(at.Add(-time.Second))
		l.noFullPass(t, "before its time")
		l.clock.advance(at)
		l.pass(t, "full", fmt.Sprintf("%d after 10 minutes", i+1))
	}
	l.noAttempt(t, "nothing due")
}

// A short-lived certificate wakes the loop at its renewal time (half its
// lifetime left), not at the next 10 minutes; the failed attempt then
// backs off (5 min, 10 min, 20 min), and the loop retries when each
// back-off ends, never before.
func TestShortLivedCertificateAndBackOff(t *testing.T) {
	store := newStore(t)
	clock := newFakeClock()
	start := clock.Now()
	// 70 minutes ahead, one hour back (pki's backdate): it renews at
	// half its life, 5 minutes from now.
	cert := addACME(t, store, "short", start, 70*time.Minute)
	renewAt := pki.RenewalTime(cert)
	if !renewAt.Equal(start.Add(5 * time.Minute)) {
		t.Fatalf("renewal time %s, want 5 minutes after %s", renewAt, start)
	}
	l := startLoop(t, store, clock, false)
	l.pass(t, "full", "at start")
	if at := l.clock.sleeping(t); !at.Equal(renewAt) {
		t.Fatalf("sleeps until %s, want the renewal time %s", at, renewAt)
	}
	l.noAttempt(t, "before the renewal time")
	l.clock.advance(renewAt)
	l.pass(t, "full", "at the renewal time")
	if o := l.attempt(t, "short", "at the renewal time"); o.err == nil {
		t.Fatal("the attempt succeeded without an ACME account")
	}
	// Back-offs of 5 and 10 minutes: woken at their end.
	now := renewAt
	for _, backoff := range []time.Duration{5 * time.Minute, 10 * time.Minute} {
		retry := now.Add(backoff)
		if at := l.clock.sleeping(t); !at.Equal(retry) {
			t.Fatalf("after a failure: sleeps until %s, want the end of the %v back-off %s", at, backoff, retry)
		}
		l.clock.advance(retry)
		l.pass(t, "full", "when the back-off ended")
		l.attempt(t, "short", fmt.Sprintf("after the %v back-off", backoff))
		now = retry
	}
	// 20 minutes: the loop looks after 10 and does not try, then tries.
	retry := now.Add(20 * time.Minute)
	for _, try := range []bool{false, true} {
		at := l.clock.sleeping(t)
		if want := now.Add(maxSleep); !at.Equal(want) {
			t.Fatalf("during a 20 min back-off: sleeps until %s, want %s", at, want)
		}
		l.clock.advance(at)
		l.pass(t, "full", "during the back-off")
		if try {
			l.attempt(t, "short", "when the 20 min back-off ended")
		} else {
			l.noAttempt(t, "during the back-off")
		}
		now = at
	}
	if !now.Equal(retry) {
		t.Fatalf("tried at %s, want %s", now, retry)
	}
	meta, err := mappings.LoadMeta(context.Background(), store, "short")
	if err != nil || meta.Attempts != 4 {
		t.Errorf("meta %+v, %v: want 4 attempts recorded", meta, err)
	}
}

// A change of the state makes a prompt pass at once, with no time passed:
// a new ACME mapping is issued without waiting for the next full pass,
// and its failure wakes the loop when its back-off ends.
func TestChangeMakesPromptPass(t *testing.T) {
	store := newStore(t)
	l := startLoop(t, store, newFakeClock(), false)
	l.pass(t, "full", "at start")
	wake := l.clock.sleeping(t)
	addACME(t, store, "new", time.Time{}, 0)
	l.pass(t, "prompt", "after the change")
	if o := l.attempt(t, "new", "after the change"); o.err == nil {
		t.Fatal("the attempt succeeded without an ACME account")
	}
	retry := l.clock.Now().Add(5 * time.Minute)
	// The prompt pass's own change makes another; the loop settles on the
	// end of the back-off, sooner than the full pass it was waiting for.
	deadline := time.Now().Add(30 * time.Second)
	for at := l.clock.sleeping(t); !at.Equal(retry); at = l.clock.sleeping(t) {
		if time.Now().After(deadline) {
			t.Fatalf("sleeps until %s, want the end of the back-off %s (the full pass was at %s)", at, retry, wake)
		}
		time.Sleep(time.Millisecond)
	}
	l.clock.advance(retry)
	l.pass(t, "full", "when the back-off ended")
	l.attempt(t, "new", "when the back-off ended")
}

// mapping set on an ACME mapping that has a certificate (new hosts, a new
// challenge) is ordered by a prompt pass at once, not at the next full
// pass; a change that asks for no new order (the upstream) orders nothing.
func TestMappingSetOrdersAtOnce(t *testing.T) {
	store := newStore(t)
	now := time.Now().UTC().Truncate(time.Second)
	addACME(t, store, "shop", now.Add(-time.Hour), 60*24*time.Hour)
	l := startLoop(t, store, newFakeClock(), false)
	l.pass(t, "full", "at start")
	l.noAttempt(t, "at start, with a certificate that is not due")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change mappings.Changes
		orders bool
	}{
		{"upstream", mappings.Changes{Upstream: ptr("http://127.0.0.1:9001")}, false},
		{"hosts", mappings.Changes{Hosts: []string{"shop.example.com", "www.shop.example.com"}}, true},
	} {
		l.clock.sleeping(t)
		if _, _, err := mappings.Set(ctx, store, "shop", tc.change, l.clock.Now(), nil, mappings.Fields{}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		l.pass(t, "prompt", "after mapping set "+tc.name)
		if tc.orders {
			l.attempt(t, "shop", "after mapping set "+tc.name)
		} else {
			l.clock.sleeping(t) // the pass is over
			l.noAttempt(t, "after mapping set "+tc.name)
		}
		l.noFullPass(t, "after mapping set "+tc.name)
	}
}

func ptr[T any](v T) *T { return &v }

// A panic in a pass is recovered, logged at ERROR and counted, and the
// loop sleeps no longer than 10 minutes before its next pass.
func TestLoopSurvivesAPanic(t *testing.T) {
	store := newStore(t)
	before := edge.Panics()
	l := startLoop(t, store, newFakeClock(), true)
	for i := range 3 {
		l.pass(t, "full", fmt.Sprintf("%d: the loop died", i+1))
		at := l.clock.sleeping(t)
		if d := at.Sub(l.clock.Now()); d > maxSleep || d <= 0 {
			t.Fatalf("after a panic: sleeps %v", d)
		}
		l.clock.advance(at)
	}
	if n := edge.Panics() - before; n < 3 {
		t.Errorf("%d panics counted, want at least 3", n)
	}
	if out := l.logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, `in="renewal loop"`) {
		t.Errorf("panic not logged at ERROR:\n%s", out)
	}
}

// The wake time is kept within [minSleep, maxSleep] of now.
func TestBound(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		next, want time.Time
	}{
		{time.Time{}, now.Add(maxSleep)},
		{now.Add(-time.Hour), now.Add(minSleep)},
		{now, now.Add(minSleep)},
		{now.Add(time.Minute), now.Add(time.Minute)},
		{now.Add(maxSleep), now.Add(maxSleep)},
		{now.Add(6 * time.Hour), now.Add(maxSleep)},
	}
	for _, tc := range tests {
		if got := bound(tc.next, now); !got.Equal(tc.want) {
			t.Errorf("bound(%s) = %s, want %s", tc.next, got, tc.want)
		}
	}
}
