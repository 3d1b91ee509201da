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

// snapshot is what a scrape reports of the listeners and mappings. Its
// mappings hold no pointer (their strings are offsets into ids and
// indexes into names): at 100k mappings the garbage collector would
// otherwise mark 300k more strings on every cycle.
type snapshot struct {
	listeners []public.ListenerCounts
	mappings  []sample
	ids       []byte   // every sample's mapping id, end to end
	names     []string // listener and source names, by sample's index
	// caNotAfter is the management CA's end of validity (Unix seconds),
	// 0 when the state has none.
	caNotAfter int64
}

// sample is one served mapping's certificate, as "cert list" describes it.
type sample struct {
	notBefore, notAfter, renewAt int64  // Unix seconds, when cert
	idStart, idEnd               uint32 // in snapshot.ids
	listener, source             uint16 // in snapshot.names
	// cert: the mapping has a usable certificate, described by the times.
	cert bool
	// acme: the mapping renews by ACME; renewOK is false when its last
	// attempt failed (meta.toml's last_error).
	acme, renewOK bool
	// backoff is the reason of an ACME mapping's back-off (an index of
	// backoffReasons, 0 for none) until retryAt (Unix seconds): a scrape
	// counts those whose time has not come (p2ptls_acme_backoff_mappings).
	backoff uint8
	retryAt int64
}

// backoffReasons are the values of p2ptls_acme_backoff_mappings' reason
// label, by sample.backoff (0: not backing off).
var backoffReasons = [...]string{"", mappings.BackoffRateLimited, mappings.BackoffAccountPaused, mappings.BackoffFailed}

// backoffIndex is reason's index in backoffReasons (failed for an
// unknown one: a meta written before reasons were recorded).
func backoffIndex(reason string) uint8 {
	for i, r := range backoffReasons[1:] {
		if r == reason {
			return uint8(i + 1)
		}
	}
	return uint8(len(backoffReasons) - 1)
}

// id is s's mapping id, as bytes of snap.ids.
func (snap *snapshot) id(s *sample) []byte { return snap.ids[s.idStart:s.idEnd] }

// builder makes a snapshot.
type builder struct {
	snap  *snapshot
	index map[string]uint16 // snap.names by name
}

func newBuilder(n int) *builder {
	return &builder{snap: &snapshot{mappings: make([]sample, 0, n)}, index: map[string]uint16{}}
}

// name is name's index in snap.names.
func (b *builder) name(name string) uint16 {
	i, ok := b.index[name]
	if !ok {
		i = uint16(len(b.snap.names))
		b.snap.names = append(b.snap.names, name)
		b.index[name] = i
	}
	return i
}

// add appends s, the sample of mapping id on listener with source.
func (b *builder) add(listener, id, source string, s sample) {
	s.listener, s.source = b.name(listener), b.name(source)
	s.idStart = uint32(len(b.snap.ids))
	b.snap.ids = append(b.snap.ids, id...)
	s.idEnd = uint32(len(b.snap.ids))
	b.snap.mappings = append(b.snap.mappings, s)
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

// Run keeps the snapshot current until ctx ends, from the first scrape
// on: one refresh then, one after each reload serve makes (spaced, see
// refreshGapFactor), and one every refreshEvery.
func (m *Metrics) Run(ctx context.Context) {
	// The reloads are counted before each refresh: one made during it
	// makes the next.
	select {
	case <-ctx.Done():
		return
	case <-m.wanted:
	}
	r := m.o.Public.Reloads()
	seen := r.OK + r.Failed
	m.Refresh(ctx)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
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
	n := 0
	if old := m.snap.Load(); old != nil {
		n = len(old.mappings)
	}
	b := newBuilder(n)
	b.snap.listeners = m.o.Public.Metrics(func(listener string, mp state.Mapping) {
		b.add(listener, mp.ID, mp.Source, describe(ctx, sums, mp))
	})
	snap := b.snap
	snap.caNotAfter = m.caNotAfter(ctx)
	m.publish(snap)
}

// publish makes snap the one scrapes read; the first one also ends the
// first scrape's wait.
func (m *Metrics) publish(snap *snapshot) {
	m.snap.Store(snap)
	m.readyOnce.Do(func() { close(m.ready) })
}

// caNotAfter is the end of validity (Unix seconds) of the CA agents are
// told to trust (statemgmt.AgentCA: the auto CA, or the top of mode
// provided's chain), 0 for none: mode off serves no TLS, and a CA left in
// the state from an earlier mode is not in use.
func (m *Metrics) caNotAfter(ctx context.Context) int64 {
	if m.o.Management.Mode == statemgmt.ModeOff {
		return 0
	}
	caPEM, err := statemgmt.AgentCA(ctx, m.o.Store, m.o.Management)
	if err != nil {
		return 0
	}
	chain, err := pki.ParseCertChain(caPEM)
	if err != nil {
		return 0
	}
	return chain[0].NotAfter.Unix()
}

// describe is mp's sample, by the rules of "cert list" (mappings.Info):
// a usable certificate's validity, renewal at pki.RenewalTime unless
// ACME's own schedule (meta.toml's next_renewal_at) says otherwise.
func describe(ctx context.Context, sums *mappings.Summaries, mp state.Mapping) sample {
	s := sample{acme: mp.Source == state.SourceACME, renewOK: true}
	var meta mappings.Meta
	if s.acme {
		var err error
		meta, err = sums.Meta(ctx, mp.ID)
		s.renewOK = err == nil && meta.LastError == ""
		if !meta.RetryAt.IsZero() {
			s.backoff, s.retryAt = backoffIndex(meta.BackoffReason), meta.RetryAt.Unix()
		}
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
