package acme

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/p2pstream/p2ptls/state"
)

// DefaultConcurrency is how many ACME orders run at once when neither
// --concurrency nor acme.concurrency says otherwise. Concurrency changes
// how fast orders are made, not how many: Let's Encrypt allows 300 new
// orders per account per 3 hours (a burst of 300, then one every 36 s),
// which serial issuance at 5-10 s an order reaches too, only later. At 8
// orders at once, each polling its authorizations about every 5 s, a
// process sends a few requests a second, far below the CA's per-address
// request rates, and a run of 1,000 mappings finishes in minutes instead
// of hours: past the 300, the CA answers rateLimited and the rest back off
// until its Retry-After.
const DefaultConcurrency = 8

// MaxConcurrency bounds acme.concurrency and --concurrency: more orders at
// once only meet the CA's rate limits sooner.
const MaxConcurrency = state.MaxACMEConcurrency

// Limit is how many orders a run makes at once: the option, else
// p2ptls.toml's acme.concurrency (cfg may be nil), else
// DefaultConcurrency.
func (o Options) Limit(cfg *state.Config) int {
	n := o.Concurrency
	if n <= 0 && cfg != nil {
		n = cfg.ACME.Concurrency
	}
	if n <= 0 {
		n = DefaultConcurrency
	}
	return min(n, MaxConcurrency)
}

// Bounded calls fn(i) for every i below count, at most n at once, handing
// the indexes out in order. Once ctx ends no further index is handed out
// (those in flight see ctx and end at once); reached reports which
// indexes were handed out.
func Bounded(ctx context.Context, n, count int, fn func(i int)) (reached []bool) {
	reached = make([]bool, count)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(n, count)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				reached[i] = true
				fn(i)
			}
		})
	}
	wg.Wait()
	return reached
}

// hookMu runs deploy hooks one at a time in this process: a hook written
// for one renewal after another (reload a server, copy files) never runs
// beside itself, however many orders run at once.
var hookMu sync.Mutex

// deployOne runs the hook for one renewed mapping, after the others'.
func deployOne(ctx context.Context, h Hook, o *Options, s state.Store, m state.Mapping) error {
	if h.Command == "" {
		return nil
	}
	hookMu.Lock()
	defer hookMu.Unlock()
	return deploy(ctx, h, o.log(), s, m)
}
