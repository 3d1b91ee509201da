package metrics

import (
	"context"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/public"
	"github.com/p2pstream/p2ptls/state"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// snapshot is what a scrape reports of the listeners and mappings.
type snapshot struct {
	listeners []public.ListenerCounts
	mappings  []sample
	// caNotAfter is the management CA's end of validity (Unix seconds),
	// 0 when the state has none.
	caNotAfter int64
}

// sample is one served mapping's certificate, as "cert list" describes it.
type sample struct {
	listener, id, source string
	// cert: the mapping has a usable certificate, described by the times
	// (Unix seconds).
	cert                         bool
	notBefore, notAfter, renewAt int64
	// acme: the mapping renews by ACME; renewOK is false when its last
	// attempt failed (meta.toml's last_error).
	acme, renewOK bool
}

const (
	// pollEvery is how often Run looks whether serve reloaded.
	pollEvery = time.Second
	// refreshEvery bounds the snapshot's age without reloads, a safety
	// net: what changes a certificate (a command, cron's renewals, a
	// "file" mapping's files rotated, which serve's tick notices) makes
	// serve reload, and the snapshot's values are times, which do not
	// age. At 100k mappings a refresh costs 0.7-0.8 s of CPU
	// (BenchmarkRefresh).
	refreshEvery = 5 * time.Minute
	// refreshGapFactor spaces refreshes during a stream of changes: the
	// next waits this many times as long as the last took (at 100k
	// mappings a refresh stats 300k files: 2 s on a busy machine), so
	// refreshing takes at most a tenth of a core.
	refreshGapFactor = 10
	minRefreshGap    = time.Second
)

// Run keeps the snapshot current until ctx ends: one refresh at once, one
// after each reload serve makes (spaced, see refreshGapFactor), and one
// every refreshEvery.
func (m *Metrics) Run(ctx context.Context) {
	m.Refresh(ctx)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	r := m.o.Public.Reloads()
	seen := r.OK + r.Failed
	last, gap := time.Now(), minRefreshGap
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := m.o.Public.Reloads()
		since := time.Since(last)
		if !(r.OK+r.Failed != seen && since >= gap || since >= refreshEvery) {
			continue
		}
		seen = r.OK + r.Failed
		start := time.Now()
		m.Refresh(ctx)
		last = time.Now()
		gap = max(minRefreshGap, refreshGapFactor*last.Sub(start))
	}
}

// Refresh rebuilds the snapshot now. A panic in it (an odd state the
// summaries trip over) is recovered and counted; the previous snapshot
// stays.
func (m *Metrics) Refresh(ctx context.Context) {
	defer edge.Recover(m.o.Log, "metrics refresh")
	sums := mappings.NewSummaries(m.o.Store)
	defer sums.Save()
	var list []sample
	if old := m.snap.Load(); old != nil {
		list = make([]sample, 0, len(old.mappings))
	}
	ls := m.o.Public.Metrics(func(listener string, mp state.Mapping) {
		list = append(list, describe(ctx, sums, listener, mp))
	})
	snap := &snapshot{listeners: ls, mappings: list}
	if _, ca, err := statemgmt.CACertificate(ctx, m.o.Store); err == nil {
		snap.caNotAfter = ca.NotAfter.Unix()
	}
	m.snap.Store(snap)
}

// describe is mp's sample, by the rules of "cert list" (mappings.Info):
// a usable certificate's validity, renewal at pki.RenewalTime unless
// ACME's own schedule (meta.toml's next_renewal_at) says otherwise.
func describe(ctx context.Context, sums *mappings.Summaries, listener string, mp state.Mapping) sample {
	s := sample{listener: listener, id: mp.ID, source: mp.Source, acme: mp.Source == state.SourceACME, renewOK: true}
	var meta mappings.Meta
	if s.acme {
		var err error
		meta, err = sums.Meta(ctx, mp.ID)
		s.renewOK = err == nil && meta.LastError == ""
	}
	sum, err := sums.Usable(ctx, mp)
	if err != nil {
		return s
	}
	renew := pki.RenewalTime(sum.Leaf())
	if !meta.NextRenewalAt.IsZero() {
		renew = meta.NextRenewalAt
	}
	s.cert, s.notBefore, s.notAfter, s.renewAt = true, sum.NotBefore.Unix(), sum.NotAfter.Unix(), renew.Unix()
	return s
}
