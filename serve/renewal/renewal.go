// Package renewal is serve's in-process ACME loop: new ACME mappings are
// issued promptly, and every certificate is renewed when due, with the same
// code as "p2ptls cert renew" from cron: at most acme.concurrency orders at
// once, each under its mapping's claim, so that serve and cron never order
// one mapping twice, and serve's shutdown ends every order at once.
package renewal

import (
	"cmp"
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/issuance"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// The loop runs a renewal pass at start, then whenever something may be
// due: the earliest renewal time, end of a back-off or renewal info to
// ask again that the last pass found, and at least every maxSleep, so that
// a certificate put in place by hand, a clock that jumped or a pass that
// failed is looked at again soon. A pass decides again only the mappings
// whose files changed or whose time came (see tracker), and asks the ACME
// server only about the certificates whose renewal info is due to be
// asked (acme.Renew), so that one every 10 minutes stays cheap at 100k
// mappings. minSleep keeps a time that is already past (a renewal that
// cannot be saved) from making passes back to back.
const (
	maxSleep = 10 * time.Minute
	minSleep = 5 * time.Second
)

// testHook, when a test sets it, runs at the start of every pass ("full"
// for the timed one, "prompt"), and again with "complete" when the timed
// pass decides every mapping, so that the test can see it, or make it
// panic. Production code never sets it.
var testHook func(kind string)

// Clock is the loop's time: real unless a test gives its own.
type Clock interface {
	Now() time.Time
	// Timer returns a channel that receives once d has passed, and a
	// function that stops it.
	Timer(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// Options configure the loop.
type Options struct {
	Store        state.Store
	Log          *slog.Logger
	DNSResolvers []string
	// Clock is nil for the real one.
	Clock Clock
	// Observe, when set, is called after each ACME order the loop makes
	// (a first issuance or a renewal), once the result is saved and
	// before the deploy hook runs: err is nil when the new certificate is
	// in place, else the failure recorded in the mapping (which then backs
	// off). Orders run acme.concurrency at once (acme.Renew); Observe is
	// called one at a time, from the goroutine of the order. It must not
	// block: the next order waits for it.
	Observe func(id string, err error)
	// BackoffFile is where each pass publishes its back-off count:
	// runstatus.BackoffFile when empty, a replica's own file on a shared
	// store (runstatus.ReplicaBackoffFile).
	BackoffFile string
}

// Run issues and renews until ctx ends. A panic in one pass (an odd
// mapping the ACME code trips over) is recovered and counted, and the loop
// goes on with the next one.
func Run(ctx context.Context, o Options) {
	clk := o.Clock
	if clk == nil {
		clk = realClock{}
	}
	feed := o.Store.WatchChanges(ctx)
	opts := acme.Options{Log: o.Log, DNSResolvers: o.DNSResolvers}
	bo := &backoffs{set: map[string]mappings.BackoffMapping{}}
	t := newTracker()
	var wake time.Time // the next timed pass; zero: at once
	for {
		if now := clk.Now(); !now.Before(wake) {
			next := timedPass(ctx, o, opts, clk, bo, t)
			wake = bound(next, clk.Now())
		}
		if ctx.Err() != nil {
			return
		}
		fired, stop := clk.Timer(wake.Sub(clk.Now()))
		select {
		case <-ctx.Done():
			stop()
			return
		case _, ok := <-feed.C:
			stop()
			if !ok { // ctx ended
				return
			}
			c := feed.Take()
			t.note(c) // decided again at the next timed pass
			// A change may have added an ACME mapping, or changed one's
			// hosts or ACME settings (mapping set): it is ordered now, not
			// at the next full pass. Scanning for them costs a stat per
			// ACME mapping and a read per changed meta; a pass that issues
			// changes the state, and the signal of that change makes the
			// next one.
			if next := promptPass(ctx, o, opts, clk, bo, mappings.MetaChanged(c)); !next.IsZero() {
				if at := bound(next, clk.Now()); at.Before(wake) {
					wake = at
				}
			}
		case <-fired:
		}
	}
}

// bound is when to run the pass after one that found next (zero: nothing
// known), at now: within [now+minSleep, now+maxSleep].
func bound(next, now time.Time) time.Time {
	switch {
	case next.IsZero() || next.After(now.Add(maxSleep)):
		return now.Add(maxSleep)
	case next.Before(now.Add(minSleep)):
		return now.Add(minSleep)
	}
	return next
}

// promptPass issues ACME mappings that have no certificate yet, and those
// of changed marked for a new order (see issuance.Pending). It returns when
// to look again (the earliest end of a back-off; zero for none); after a
// panic, zero.
func promptPass(ctx context.Context, o Options, opts acme.Options, clk Clock, bo *backoffs, changed []string) (next time.Time) {
	defer edge.Recover(o.Log, "certificate issuance loop")
	if testHook != nil {
		testHook("prompt")
	}
	ids, retry, err := issuance.Pending(ctx, o.Store, clk.Now(), changed)
	if err != nil {
		// serve's reload reports a state that does not load; the next
		// change tries again.
		return retry
	}
	if bo != nil && len(ids) == 0 {
		// The change may have ended a back-off (an issue by the API or
		// "cert issue", a mapping removed): the count says so now.
		bo.recheck(ctx, o.Store, clk.Now())
		bo.publish(ctx, o, clk.Now())
	}
	if len(ids) > 0 {
		if r := pass(ctx, o, clk, acme.RenewOptions{Options: opts, Only: ids}); r != nil {
			if bo != nil {
				bo.recheck(ctx, o.Store, clk.Now())
				bo.merge(ids, r.Backoffs)
				bo.publish(ctx, o, clk.Now())
			}
			return earliest(r.Next, retry)
		}
	}
	return retry
}

// timedPass renews what is due and returns when something may be due
// next (zero: nothing known, or a panic, after which the next one is
// complete).
func timedPass(ctx context.Context, o Options, opts acme.Options, clk Clock, bo *backoffs, t *tracker) time.Time {
	defer edge.Recover(o.Log, "renewal loop")
	if testHook != nil {
		testHook("full")
	}
	return t.pass(ctx, o, opts, clk, bo)
}

// backoffs are the ACME mappings backing off as the loop's passes found
// them, by id: a full pass replaces them, a prompt pass updates the
// mappings it looked at. Each pass publishes their count in
// runstatus.BackoffFile, which status and GET /api/v1/status read instead
// of a meta per mapping.
type backoffs struct {
	set map[string]mappings.BackoffMapping
}

// merge replaces the back-offs of ids (a prompt pass's) with found.
func (b *backoffs) merge(ids []string, found map[string]mappings.BackoffMapping) {
	for _, id := range ids {
		delete(b.set, id)
	}
	for id, e := range found {
		b.set[id] = e
	}
}

// recheck reads again the meta of each mapping backing off (through the
// certs memo: a stat when it has not changed), and drops those that no
// longer do. Only those: a back-off that another process recorded for a
// mapping with a certificate ("cert renew" from cron beside serve) is
// counted by the next full pass.
func (b *backoffs) recheck(ctx context.Context, s state.Store, now time.Time) {
	if len(b.set) == 0 {
		return
	}
	sums := mappings.NewSummaries(s)
	defer sums.Save()
	for id := range b.set {
		meta, err := sums.Meta(ctx, id)
		if err != nil {
			continue // unreadable: kept as last seen
		}
		if e, ok := mappings.BackoffOf(id, meta, now); ok {
			b.set[id] = e
		} else {
			delete(b.set, id)
		}
	}
}

// publish writes the count at now. A failure to write is logged: status
// then shows the previous count with its time.
func (b *backoffs) publish(ctx context.Context, o Options, now time.Time) {
	if ctx.Err() != nil {
		return // a pass cut short counted only part of the mappings
	}
	st := runstatus.Backoff{Backoff: mappings.CountBackoffs(b.set, now), CountedAt: now.UTC()}
	file := cmp.Or(o.BackoffFile, runstatus.BackoffFile)
	if err := runstatus.WriteBackoff(ctx, o.Store, file, st, os.Getpid()); err != nil && ctx.Err() == nil {
		o.Log.Warn("ACME back-off count not saved for status", "err", err)
	}
}

func pass(ctx context.Context, o Options, clk Clock, ro acme.RenewOptions) *acme.Report {
	ro.Attempted = o.Observe
	r, err := acme.Renew(ctx, o.Store, clk.Now, ro)
	if err != nil {
		logPassFailed(ctx, o, err)
		return nil
	}
	if len(r.Renewed)+len(r.Failed) > 0 {
		o.Log.Info("renewal pass", "renewed", r.Renewed, "failed", r.Failed, "deploy_hook_failed", r.HookFailed)
	}
	return r
}

// logPassFailed logs a pass that could not run (a state that does not
// load), unless it stopped because the loop did.
func logPassFailed(ctx context.Context, o Options, err error) {
	if ctx.Err() == nil {
		o.Log.Error("renewal pass failed", "err", err)
	}
}

// earliest is the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
