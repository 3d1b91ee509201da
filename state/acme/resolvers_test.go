package acme

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/lego"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/dnscred"
)

// TestDNS01SolversAtOnceDoNotRace: DNS-01 solvers set up at once, with
// two resolver sets, do not race on lego's process-wide resolver list
// (run with -race: before the gate, each setSolver wrote it through
// dns01.AddRecursiveNameservers).
func TestDNS01SolversAtOnceDoNotRace(t *testing.T) {
	ctx := context.Background()
	srv := ariServer(t, false, nil)
	s := renewState(t, srv, time.Now(), 90*24*time.Hour)
	if err := dnscred.Add(ctx, s, state.DNSCredential{Name: "cf", Provider: "cloudflare", Enabled: true, APIBaseURL: "http://127.0.0.1:1"}, "token"); err != nil {
		t.Fatal(err)
	}
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := LoadAccount(ctx, s, cfg.ACME.Directory)
	if err != nil {
		t.Fatal(err)
	}
	m := state.Mapping{ID: "d", Listener: "web", Hosts: []string{"d.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeDNS01, DNSCredential: "cf"}
	sets := [][]string{{"127.0.0.1:5301"}, {"127.0.0.1:5302"}}
	const n = 8
	clients := make([]*lego.Client, n)
	for i := range clients {
		if clients[i], err = newClient(ctx, acct, ""); err != nil {
			t.Fatal(err)
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			release, err := setSolver(ctx, clients[i], s, cfg, m, sets[i%2])
			if err != nil {
				t.Error(err)
				return
			}
			release()
		})
	}
	close(start)
	wg.Wait()
}

// TestResolverGate: orders with the set in place go ahead together; one
// with another set waits until they are done and then puts its own in
// place; the list is never changed under an order that uses it; a wait
// ends with its context.
func TestResolverGate(t *testing.T) {
	var inUse [2]atomic.Int32
	var sets atomic.Int32
	g := &gate{}
	g.set = func(ns []string) {
		sets.Add(1)
		for k := range inUse {
			if inUse[k].Load() != 0 {
				t.Errorf("resolvers set to %v while set %d is in use", ns, k)
			}
		}
	}
	lists := [][]string{{"127.0.0.1:1"}, {"127.0.0.1:2"}}
	ctx := context.Background()

	// Two of one set at once: both in, one write of the list.
	r1, err1 := g.enter(ctx, lists[0])
	r2, err2 := g.enter(ctx, lists[0])
	if err1 != nil || err2 != nil || sets.Load() != 1 {
		t.Fatalf("two orders of one set: %v %v, %d writes; want 1", err1, err2, sets.Load())
	}
	// Another set waits while they hold theirs.
	entered := make(chan func())
	go func() {
		r, err := g.enter(ctx, lists[1])
		if err != nil {
			t.Error(err)
		}
		entered <- r
	}()
	select {
	case <-entered:
		t.Fatal("an order with another resolver set went ahead while the first set was in use")
	case <-time.After(100 * time.Millisecond):
	}
	// A wait for the other set ends with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.enter(cctx, lists[1]); err == nil {
		t.Error("a wait whose context ended went ahead")
	}
	r1()
	r2()
	r3 := <-entered
	if sets.Load() != 2 {
		t.Errorf("%d writes of the list, want 2", sets.Load())
	}
	r3()

	// Many at once, of both sets: the list never changes under one.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			k := i % 2
			r, err := g.enter(ctx, lists[k])
			if err != nil {
				t.Error(err)
				return
			}
			inUse[k].Add(1)
			time.Sleep(time.Millisecond)
			inUse[k].Add(-1)
			r()
		})
	}
	wg.Wait()
}
