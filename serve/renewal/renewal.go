// Package renewal is serve's in-process ACME loop: new ACME mappings are
// issued promptly, and every certificate is renewed when due, with the same
// code and under the same lock as "p2ptls cert renew" from cron.
package renewal

import (
	"context"
	"log/slog"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/issuance"
)

// renewInterval is how often serve runs a full renewal pass. Six hours
// follows the Retry-After that ACME servers give for renewal info, and
// keeps a state of 100k mappings from asking the server about each of them
// every hour. New ACME mappings do not wait for it: a change of the state
// (the store's signal) or the end of a back-off starts a prompt pass.
const renewInterval = 6 * time.Hour

// testHook, when a test sets it, runs at the start of every prompt pass so
// that the test can make it panic. Production code never sets it.
var testHook func()

// Options configure the loop.
type Options struct {
	Store        state.Store
	Log          *slog.Logger
	DNSResolvers []string
}

// Run issues and renews until ctx ends. A panic in one pass (an odd
// mapping the ACME code trips over) is recovered and counted, and the loop
// goes on with the next one.
func Run(ctx context.Context, o Options) {
	changes := o.Store.Watch(ctx)
	renew := time.NewTicker(renewInterval)
	defer renew.Stop()
	// retry ends the earliest back-off; it first fires at once, for the
	// mappings added before serve started.
	retry := time.NewTimer(0)
	defer retry.Stop()
	opts := acme.Options{Log: o.Log, DNSResolvers: o.DNSResolvers}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok { // ctx ended
				return
			}
		case <-retry.C:
		case <-renew.C:
			fullPass(ctx, o, opts)
			continue
		}
		// Scanning 100k mappings costs: it runs only when the state may
		// have changed or a back-off ended. A pass that issues changes
		// the state, and the signal of that change makes the next one.
		if next := promptPass(ctx, o, opts); !next.IsZero() {
			retry.Reset(time.Until(next))
		} else {
			retry.Stop()
		}
	}
}

// promptPass issues ACME mappings that have no certificate yet. It returns
// the earliest end of a back-off (zero for none); after a panic, what it
// had found by then.
func promptPass(ctx context.Context, o Options, opts acme.Options) (retry time.Time) {
	defer edge.Recover(o.Log, "certificate issuance loop")
	if testHook != nil {
		testHook()
	}
	ids, retry, err := issuance.Pending(ctx, o.Store, time.Now())
	if err != nil {
		// serve's reload reports a state that does not load; the next
		// change tries again.
		return retry
	}
	if len(ids) > 0 {
		pass(ctx, o, acme.RenewOptions{Options: opts, Only: ids})
	}
	return retry
}

func fullPass(ctx context.Context, o Options, opts acme.Options) {
	defer edge.Recover(o.Log, "renewal loop")
	pass(ctx, o, acme.RenewOptions{Options: opts})
}

func pass(ctx context.Context, o Options, ro acme.RenewOptions) {
	r, err := acme.Renew(ctx, o.Store, time.Now, ro)
	if err != nil {
		o.Log.Error("renewal pass failed", "err", err)
		return
	}
	if len(r.Renewed)+len(r.Failed) > 0 {
		o.Log.Info("renewal pass", "renewed", r.Renewed, "failed", r.Failed)
	}
}
