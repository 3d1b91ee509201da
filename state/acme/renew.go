package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	legoacme "github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/parallel"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// RenewOptions choose what "cert renew" does.
type RenewOptions struct {
	Options
	// Days, when > 0, renews certificates with fewer days left, instead of
	// the ARI window or the one-third rule.
	Days int
	// DryRun decides without issuing.
	DryRun bool
	// Force renews every ACME certificate and ignores back-off.
	Force bool
	// DeployHook is a shell command run after each successful renewal;
	// empty: p2ptls.toml's acme.deploy_hook, if any.
	DeployHook string
	// DeployHookTimeout bounds each run of the hook; 0: p2ptls.toml's
	// acme.deploy_hook_timeout, else DefaultDeployHookTimeout.
	DeployHookTimeout time.Duration
	// RunEvery is how often this renewal runs when it is not serve's loop
	// (which wakes at the very renewal time): 'cert renew' from the
	// timer, TimerInterval. A time chosen in an ARI window that comes
	// before the next run is renewed at once (RFC 9773, 4.2), rather than
	// up to a run later, past the window.
	RunEvery time.Duration
	// Only limits the run to these mapping ids (serve's prompt issuance,
	// and the mappings its loop decides again).
	Only []string
	// Config, when set, is the desired state as the caller holds it
	// (serve's loop, which follows the store's changes), instead of one
	// loaded for the run: its ACME mappings (those of Only, if given) are
	// decided. A renewal decides again under its mapping's claim from the
	// state as loaded then, so a Config a change made stale since costs
	// at most a decision, never a wrong renewal.
	Config *state.Config
	// Seen, when set, gives the identities of the mappings' files as the
	// caller stat'ed them just before (see mappings.Seen), so that the
	// first decisions do not stat them again.
	Seen mappings.Seen
	// BeforeRenewal, when set, runs once before the first renewal, only
	// when one is due and this is not a dry run: cron's random delay, so
	// that a pass with nothing to do ends at once. Its error (the context
	// ended while it waited) ends the run.
	BeforeRenewal func(ctx context.Context) error
	// Attempted, when set, is called after each ACME order the run made,
	// once its result is saved and before the deploy hook runs: err is nil
	// when the new certificate is in place, else the failure recorded in
	// the mapping. Orders cut short by ctx, and mappings found not due
	// under the lock, are no attempts.
	Attempted func(id string, err error)
}

// Report says what happened to each ACME mapping, by id.
type Report struct {
	Renewed []string          `json:"renewed"`
	Failed  []string          `json:"failed"`
	Skipped []string          `json:"skipped"`
	DryRun  bool              `json:"dry_run"`
	Errors  map[string]string `json:"errors"`
	Reasons map[string]string `json:"reasons"`
	// HookFailed are the renewed mappings whose deploy hook failed (their
	// error is in Errors): the renewal is done, the deploy is not.
	HookFailed []string `json:"-"`
	// Next is the earliest time at which a mapping of the run may need
	// something again: a renewal time, the end of a back-off, a renewal
	// info to ask again. Zero when none is known. Serve sleeps until then.
	Next time.Time `json:"-"`
	// Backoffs are the mappings of the run backing off at its end, by id,
	// from the metas the run read anyway: serve counts them for status
	// and the API (mappings.CountBackoffs) without reading them again.
	Backoffs map[string]mappings.BackoffMapping `json:"-"`
	// Waits are the mappings of the run found not due, in the run's
	// order, each with the time it may need something (Next's part, or
	// its certificate's expiry when that comes first): as long as its
	// files stay the same and that time has not come, a decision again
	// would be the same. A mapping of the run not among them (due,
	// skipped, cut short, or decided without the renewal info of a server
	// that could not be reached) is to be decided again at the next run.
	// Serve's loop decides again only what changed or came due.
	Waits []Wait `json:"-"`
}

// Wait is one mapping found not due, and when to look at it again.
type Wait struct {
	ID   string
	Next time.Time
}

// soonest folds t into r.Next.
func (r *Report) soonest(t time.Time) {
	if !t.IsZero() && (r.Next.IsZero() || t.Before(r.Next)) {
		r.Next = t
	}
}

// TimerInterval is how often the shipped timer runs 'cert renew'
// (deploy/systemd/p2ptls-renew.timer: 00:00 and 12:00, up to 1 h late):
// its RunEvery.
const TimerInterval = 12 * time.Hour

// How often the renewal info of a certificate is asked (RFC 9773, section
// 4.3): again once the server's Retry-After has passed, which the RFC
// makes both the least and the most time to wait, within limits the
// client sets (4.3.2):
//   - at most 24 h, the RFC's own example: a CA has 24 hours to revoke a
//     certificate for key compromise, and the renewal info is how it asks
//     for an early renewal; a Retry-After of 10 days would leave a 6-day
//     certificate deaf to that for its whole life.
//   - at least 1 h: at 100k certificates that is at most 100k requests an
//     hour, and serve's pass every 10 minutes asks about the few whose
//     time came, never about every certificate. Windows are hours to days
//     wide; a finer look gains nothing.
//
// A server that sends no Retry-After is asked again in 6 h, as is one
// whose answer is a long-term error (4.3.3: an error status, a window
// that is not one, a body or Retry-After that does not parse): lego reads
// every error status as an answer without a window, so a 5xx (temporary)
// is not told from a 4xx, and both wait the server's Retry-After when it
// sent one, else 6 h. A certificate that has expired is never asked
// about (4.3: MUST NOT).
const (
	ariRecheckDefault = 6 * time.Hour
	ariRecheckMin     = time.Hour
	ariRecheckMax     = 24 * time.Hour
)

// ariWait is how long to wait before asking again, for a Retry-After of
// retryAfter (zero: none).
func ariWait(retryAfter time.Duration) time.Duration {
	if retryAfter <= 0 {
		return ariRecheckDefault
	}
	return min(max(retryAfter, ariRecheckMin), ariRecheckMax)
}

// Renew renews every ACME certificate that is due. Each mapping is first
// decided from the state as loaded, without the lock: one that is not due
// (nearly all of them, nearly always) costs a read of its files, not a
// change that loads every record again. The renewal info answers the
// first decisions got are recorded in the mappings' meta.toml, in one
// change, so that the next run asks again only when the server said to.
// The due ones are renewed at most o.Concurrency at once, each under its
// mapping's claim and outside the state lock (issueClaimed): decided
// again there, so that two renewals at once (cron and serve, or two
// crons) never issue the same certificate twice. A mapping whose claim
// another process holds is skipped this time. The report lists mappings
// in the order of p2ptls.toml, however the orders finished.
func Renew(ctx context.Context, s state.Store, now func() time.Time, o RenewOptions) (*Report, error) {
	cfg := o.Config
	if cfg == nil {
		var err error
		if cfg, err = state.LoadConfig(ctx, s); err != nil {
			return nil, err
		}
	}
	r := &Report{Renewed: []string{}, Failed: []string{}, Skipped: []string{}, DryRun: o.DryRun, Errors: map[string]string{}, Reasons: map[string]string{},
		Backoffs: map[string]mappings.BackoffMapping{}}
	hook := o.hook(cfg)
	ari := &ariClients{}
	var only map[string]bool // a set: serve's loop may name thousands
	if len(o.Only) > 0 {
		only = make(map[string]bool, len(o.Only))
		for _, id := range o.Only {
			only[id] = true
		}
	}
	var todo []state.Mapping
	for _, m := range cfg.Mappings {
		if m.Source == state.SourceACME && (only == nil || only[m.ID]) {
			todo = append(todo, m)
		}
	}
	// The first decisions summarize each certificate through the certs
	// memo (a stat per file when nothing changed; see mappings.Summaries)
	// and may ask the ACME server: one worker per core makes them, in any
	// order.
	sums := mappings.NewSummariesSeen(s, o.Seen)
	decided := make([]verdict, len(todo))
	// Each mapping's back-off as the first decision saw it (nil for the
	// many that do not back off). Only a verdict of backing off reads the
	// meta again (from the memo): a stat more per mapping for all of them
	// would cost the pass a tenth more CPU at 100k.
	backoffs := make([]*mappings.BackoffMapping, len(todo))
	parallel.Each(len(todo), func(i int) bool {
		t := now()
		v := isDue(ctx, sums, s, cfg, todo[i], t, o, ari)
		decided[i] = v
		if v.due || !strings.HasPrefix(v.why, backingOffWhy) {
			return ctx.Err() == nil
		}
		if meta, err := sums.Meta(ctx, todo[i].ID); err == nil {
			if e, ok := mappings.BackoffOf(todo[i].ID, meta, t); ok {
				backoffs[i] = &e
			}
		}
		return ctx.Err() == nil
	})
	sums.Save()
	for _, e := range backoffs {
		if e != nil {
			r.Backoffs[e.ID] = *e
		}
	}
	if !o.DryRun {
		recordARI(ctx, s, todo, decided, o.log())
	}
	var due []int // indexes into todo
	for i, v := range decided {
		if v.due && !o.DryRun {
			due = append(due, i)
		}
	}
	if len(due) > 0 && o.BeforeRenewal != nil && ctx.Err() == nil {
		if err := o.BeforeRenewal(ctx); err != nil {
			return nil, err
		}
	}
	// Each due mapping's outcome, by index into due; the report is made
	// from them in order once every order is done.
	type outcome struct {
		m         state.Mapping
		v         verdict
		attempted bool
		err       error
		hookErr   error
		next      time.Time
		// meta is the mapping's after the attempt (loaded: metaOK).
		meta   mappings.Meta
		metaOK bool
	}
	outs := make([]outcome, len(due))
	var observe sync.Mutex // Attempted is called one at a time
	// The deploy hooks run one at a time, in the order of p2ptls.toml, on
	// a goroutine of their own: an order that finished waits for those
	// before it to deploy, but never holds up the orders after it.
	finished := make(chan int, len(due))
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		ready := make([]bool, len(due))
		next := 0
		runHook := func(k int) {
			if out := &outs[k]; out.err == nil && out.attempted {
				out.hookErr = deployOne(ctx, hook, &o.Options, s, out.m)
			}
		}
		for k := range finished {
			ready[k] = true
			for ; next < len(due) && ready[next]; next++ {
				runHook(next)
			}
		}
		for ; next < len(due); next++ { // stopped: the rest that finished
			if ready[next] {
				runHook(next)
			}
		}
	}()
	reached := Bounded(ctx, o.Limit(cfg), len(due), func(k int) {
		defer func() { finished <- k }()
		out := &outs[k]
		out.m = todo[due[k]]
		_, attempted, err := issueClaimed(ctx, s, "cert renew "+out.m.ID, out.m.ID, now, &o.Options, func(cfg *state.Config, cur state.Mapping) (decision, error) {
			out.m = cur
			v := isDue(ctx, nil, s, cfg, cur, now(), o, ari)
			out.v = v
			d := decision{due: v.due, replaces: v.leaf}
			if !v.due {
				d.ari = v.ari // asked under the claim: recorded with the decision
			}
			return d, nil
		})
		out.attempted, out.err = attempted, err
		if Busy(err) {
			// Looked at again soon: a holder that died (a replica killed
			// mid-order) frees its claim within a lease, and then one of
			// the others takes the order over.
			out.v = verdict{why: "being issued by another process", next: now().Add(BusyRetry)}
			out.err = nil
			return
		}
		if attempted && ctx.Err() == nil {
			if o.Attempted != nil {
				observe.Lock()
				o.Attempted(out.m.ID, err)
				observe.Unlock()
			}
			// The new certificate's renewal time, or the back-off's end.
			if meta, merr := mappings.LoadMeta(ctx, s, out.m.ID); merr == nil {
				out.meta, out.metaOK = meta, true
				if err != nil {
					out.next = meta.RetryAt
				} else {
					out.next = meta.NextRenewalAt
				}
			}
		}
	})
	close(finished)
	<-hooksDone
	k := 0
	for i, m := range todo {
		v := decided[i]
		if !v.due || o.DryRun {
			if ctx.Err() != nil {
				continue // stopped: only the orders that ran are reported
			}
			r.Reasons[m.ID] = v.why
			if v.due {
				r.Renewed = append(r.Renewed, m.ID)
			} else {
				r.Skipped = append(r.Skipped, m.ID)
				r.soonest(v.next)
				if !v.again {
					r.Waits = append(r.Waits, Wait{ID: m.ID, Next: v.stands()})
				}
			}
			continue
		}
		out := outs[k]
		if !reached[k] {
			k++
			continue // stopped before its turn: not reported
		}
		k++
		if ctx.Err() != nil && !out.attempted {
			continue // cut short: not reported
		}
		id := out.m.ID
		if out.v.why != "" {
			r.Reasons[id] = out.v.why
		}
		if out.metaOK { // the attempt's outcome replaces the first look
			delete(r.Backoffs, id)
			if e, ok := mappings.BackoffOf(id, out.meta, now()); ok {
				r.Backoffs[id] = e
			}
		}
		r.soonest(out.next)
		if !out.v.due {
			r.soonest(out.v.next)
		}
		if out.hookErr != nil {
			r.HookFailed = append(r.HookFailed, id)
			r.Errors[id] = text.OneLine(out.hookErr.Error())
		}
		switch {
		case out.err != nil:
			r.Failed = append(r.Failed, id)
			r.Errors[id] = text.OneLine(out.err.Error())
		case out.attempted:
			r.Renewed = append(r.Renewed, id)
		default:
			r.Skipped = append(r.Skipped, id)
		}
	}
	return r, nil
}

// BusyRetry is how soon a mapping skipped because another process holds
// its claim is looked at again: about a claim's lease on etcd (a dead
// holder's claim is gone by then), so an order whose issuer died is taken
// over within two of them.
const BusyRetry = 10 * time.Second

// verdict is one decision of isDue.
type verdict struct {
	due bool
	why string
	// leaf is the certificate in place, parsed, for obtain's "replaces":
	// decisions under the lock only.
	leaf *x509.Certificate
	// next is when to look again, when not due (zero: nothing known).
	next time.Time
	// ari is a renewal info answer to record, when the server was asked.
	ari *ariAnswer
	// again: decided without the renewal info the server is to be asked
	// for, because it could not be reached; the next run asks again.
	again bool
	// expires is when the certificate a window decided about expires,
	// which makes it due whatever the window says (before next, when the
	// window lies past it).
	expires time.Time
}

// stands is until when a verdict of not due stands, its files unchanged.
func (v verdict) stands() time.Time {
	if !v.expires.IsZero() && v.expires.Before(v.next) {
		return v.expires
	}
	return v.next
}

// ariAnswer is what the server said about the certificate with
// fingerprint fp.
type ariAnswer struct {
	fp      string
	info    mappings.ARI
	renewAt time.Time // chosen in the window; zero without one
}

// isDue decides whether m's certificate should be renewed now, and why;
// ari holds the run's clients for the renewal info. With sums, it decides
// from the certificate's summary and returns no certificate (the first,
// unlocked decision); without, it loads and parses the certificate and
// returns its leaf (the decision under the lock, which obtain is given).
// The renewal info is asked only when the answer recorded in the meta is
// not about this certificate, or its Retry-After has passed.
func isDue(ctx context.Context, sums *mappings.Summaries, s state.Store, cfg *state.Config, m state.Mapping, now time.Time, o RenewOptions, ari *ariClients) verdict {
	var meta mappings.Meta
	if sums != nil {
		meta, _ = sums.Meta(ctx, m.ID)
	} else {
		meta, _ = mappings.LoadMeta(ctx, s, m.ID)
	}
	if !o.Force && now.Before(meta.RetryAt) {
		return verdict{why: fmt.Sprintf("backing off after %d failed attempts until %s", meta.Attempts, meta.RetryAt.Format(time.RFC3339)), next: meta.RetryAt}
	}
	// leaf carries what the rules below read (validity and names); full is
	// the parsed certificate, which only ARI and obtain need.
	var leaf, full *x509.Certificate
	var fp string
	if sums != nil {
		sum, err := sums.Usable(ctx, m)
		if err != nil {
			return verdict{due: true, why: "no certificate yet"}
		}
		leaf, fp = sum.Leaf(), sum.FingerprintSHA256()
	} else {
		c, err := mappings.Load(ctx, s, m)
		if err != nil {
			return verdict{due: true, why: "no certificate yet"}
		}
		leaf, full = c.Chain[0], c.Chain[0]
		fp = pki.Fingerprint(full)
	}
	switch {
	case o.Force:
		return verdict{due: true, why: "forced", leaf: full}
	case !sameHosts(leaf, m.Hosts):
		return verdict{due: true, why: "the mapping's hosts changed", leaf: full}
	case meta.Reissue != "":
		return verdict{due: true, why: "the mapping " + meta.Reissue, leaf: full}
	case o.Days > 0:
		left := leaf.NotAfter.Sub(now)
		limit := time.Duration(o.Days) * 24 * time.Hour
		return verdict{due: left < limit, why: fmt.Sprintf("%d days left, renewing below %d", int(left.Hours()/24), o.Days), leaf: full, next: leaf.NotAfter.Add(-limit)}
	}
	if !now.Before(leaf.NotAfter) {
		// Due whatever a server would say, and RFC 9773 (4.3) forbids
		// asking about an expired certificate.
		return verdict{due: true, why: "expired on " + leaf.NotAfter.UTC().Format(time.RFC3339), leaf: full}
	}
	var v verdict
	switch {
	case meta.ARIFresh(fp, now):
		// The recorded answer stands until the server's Retry-After.
		if meta.ARI.HasWindow() {
			v = windowVerdict(meta.NextRenewalAt, meta.ARI, now, o.RunEvery, full)
			v.expires = leaf.NotAfter
			return v
		}
		v.next = meta.ARI.CheckAt
	default:
		if client := ari.client(ctx, s, cfg, m); client != nil {
			if full == nil {
				c, err := mappings.Load(ctx, s, m)
				if err != nil {
					return verdict{due: true, why: "no certificate yet"}
				}
				full = c.Chain[0]
			}
			if ans := ari.ask(client, full, fp, now); ans != nil {
				keepRenewalTime(meta, ans)
				logMovedWindow(o.log(), m.ID, meta, ans, now)
				if ans.info.HasWindow() {
					v = windowVerdict(ans.renewAt, ans.info, now, o.RunEvery, full)
					v.ari, v.expires = ans, leaf.NotAfter
					return v
				}
				v.ari, v.next = ans, ans.info.CheckAt
			}
		}
		// No answer: the server has no renewal info, the account is
		// not there, or the server could not be reached, the one case a
		// run soon after may find otherwise.
		v.again = v.ari == nil && ari.unreachable(cfg, m)
	}
	v.leaf = full
	at := pki.RenewalTime(leaf)
	// Due at the renewal time itself, not a moment after it: that is the
	// time serve wakes at (Report.Next).
	if !now.Before(at) || pki.NeedsRenewal(leaf, now) {
		v.due, v.why = true, "less than a third of its lifetime left"
		return v
	}
	v.why = "renews from " + at.Format(time.RFC3339)
	if v.next.IsZero() || at.Before(v.next) {
		v.next = at
	}
	return v
}

// keepRenewalTime keeps the renewal time chosen from the answer recorded
// in meta when the new answer is about the same certificate and has the
// same window: drawn again at every ask (each Retry-After), the time fell
// early in the window nearly always (8 draws over a 2-day window asked
// every 6 h), against the spread the window is for.
func keepRenewalTime(meta mappings.Meta, ans *ariAnswer) {
	prev, w := meta.ARI, ans.info
	if !w.HasWindow() || !prev.HasWindow() || !meta.ARIAbout(ans.fp) ||
		!prev.WindowStart.Equal(w.WindowStart) || !prev.WindowEnd.Equal(w.WindowEnd) {
		return
	}
	if at := meta.NextRenewalAt; !at.Before(w.WindowStart) && !at.After(w.WindowEnd) {
		ans.renewAt = at
	}
}

// logMovedWindow tells the operator when the server's answer asks for an
// earlier renewal than the answer recorded about the same certificate (a
// window moved earlier), or for one at once (a window already over, the
// RFC 9773 way of saying "renew now", e.g. after a revocation), with the
// server's explanation when it gave one (4.2: SHOULD be shown).
func logMovedWindow(log *slog.Logger, id string, meta mappings.Meta, ans *ariAnswer, now time.Time) {
	w := ans.info
	if !w.HasWindow() {
		return
	}
	prev := meta.ARI
	moved := prev.HasWindow() && meta.ARIAbout(ans.fp) && w.WindowStart.Before(prev.WindowStart)
	over := !now.Before(w.WindowEnd)
	if !moved && !over {
		return
	}
	attrs := []any{"mapping", id, "window_start", w.WindowStart, "window_end", w.WindowEnd}
	if moved {
		attrs = append(attrs, "previous_window_start", prev.WindowStart)
	}
	if w.ExplanationURL != "" {
		attrs = append(attrs, "explanation_url", w.ExplanationURL)
	}
	msg := "the ACME server moved the renewal window of this certificate earlier"
	if over {
		msg = "the ACME server asks for this certificate to be renewed now (its renewal window is over)"
	}
	log.Warn(msg, attrs...)
}

// windowVerdict decides from the renewal time chosen in the server's
// window w; w.CheckAt is when the server is to be asked again. A run that
// comes back only every runEvery renews now when that time comes before
// its next run (RFC 9773, 4.2, to the letter: even a little before the
// window opens, rather than up to a run after the time, past the window).
func windowVerdict(renewAt time.Time, w mappings.ARI, now time.Time, runEvery time.Duration, full *x509.Certificate) verdict {
	if !now.Before(renewAt) {
		return verdict{due: true, why: "inside the ACME server's renewal window", leaf: full}
	}
	if runEvery > 0 && now.Add(runEvery).After(renewAt) {
		return verdict{due: true, why: "inside the ACME server's renewal window, and its time " + renewAt.UTC().Format(time.RFC3339) + " comes before the next run", leaf: full}
	}
	next := renewAt
	if w.CheckAt.Before(next) {
		next = w.CheckAt
	}
	return verdict{why: "outside the ACME server's renewal window: renews from " + renewAt.UTC().Format(time.RFC3339), leaf: full, next: next}
}

// recordARI saves the renewal info answers of a run's first decisions, in
// one change: each goes into its mapping's meta.toml when the certificate
// it was about is still the one recorded there. A change that fails costs
// the next run the same requests, never a renewal: it is logged.
func recordARI(ctx context.Context, s state.Store, todo []state.Mapping, decided []verdict, log *slog.Logger) {
	var ids []string
	var answers []*ariAnswer
	for i, v := range decided {
		if v.ari != nil {
			ids, answers = append(ids, todo[i].ID), append(answers, v.ari)
		}
	}
	if len(ids) == 0 {
		return
	}
	wrote := false
	err := state.Update(ctx, s, "record renewal info", func(tx *state.Tx) error {
		for i, id := range ids {
			if _, ok := tx.Config.Mapping(id); !ok {
				continue // removed since
			}
			meta, err := mappings.LoadMeta(ctx, tx, id)
			if err != nil || meta.FingerprintSHA256 != answers[i].fp {
				continue // renewed since, or a certificate p2ptls did not record
			}
			meta.ARI, meta.NextRenewalAt = answers[i].info, answers[i].renewAt
			meta.ARI.FingerprintSHA256 = answers[i].fp
			if meta.NextRenewalAt.IsZero() {
				meta.NextRenewalAt = meta.ARI.CheckAt // no window: look again then
			}
			if err := mappings.SaveMeta(ctx, tx, id, meta); err != nil {
				return err
			}
			wrote = true
		}
		if !wrote {
			return errUnchanged
		}
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) && ctx.Err() == nil {
		log.Warn("renewal info answers not recorded; the next pass asks again", "mappings", len(ids), "err", err)
	}
}

// saveARI records one answer into a change (a decision under the lock).
func saveARI(ctx context.Context, w state.Store, id string, a *ariAnswer) error {
	meta, err := mappings.LoadMeta(ctx, w, id)
	if err != nil || meta.FingerprintSHA256 != a.fp {
		return err
	}
	meta.ARI = a.info
	meta.ARI.FingerprintSHA256 = a.fp
	if !a.renewAt.IsZero() {
		meta.NextRenewalAt = a.renewAt
	}
	return mappings.SaveMeta(ctx, w, id, meta)
}

// ariClients are the clients one renewal run asks for renewal info with,
// by directory and key type: made once, they fetch the directory once
// and keep their connection, where a client per mapping cost a TLS
// handshake and a directory request for each of 10k ACME mappings.
// Failures are kept too: a server that is away is not asked again.
type ariClients struct {
	mu      sync.Mutex
	clients map[[2]string]*lego.Client // nil: no account, or unreachable
	down    map[[2]string]bool         // unreachable: the client could not be made, or forgotten
}

// client is the run's client for m's renewal info; nil without an
// account, or when the server could not be reached.
func (a *ariClients) client(ctx context.Context, s state.Store, cfg *state.Config, m state.Mapping) *lego.Client {
	key := ariKey(cfg, m)
	a.mu.Lock() // held while the client is made, so that it is made once
	client, seen := a.clients[key]
	if !seen {
		if acct, err := LoadAccount(ctx, s, cfg.ACME.Directory); err == nil {
			var err error
			if client, err = newClient(ctx, acct, m.KeyType); err != nil {
				a.markDown(key)
			}
		}
		if a.clients == nil {
			a.clients = map[[2]string]*lego.Client{}
		}
		a.clients[key] = client
	}
	a.mu.Unlock()
	return client
}

func ariKey(cfg *state.Config, m state.Mapping) [2]string {
	return [2]string{cfg.ACME.Directory, m.KeyType}
}

// markDown records key's server as unreachable; a.mu is held.
func (a *ariClients) markDown(key [2]string) {
	if a.down == nil {
		a.down = map[[2]string]bool{}
	}
	a.down[key] = true
}

// unreachable reports whether the run found m's renewal info server
// unreachable (a client it could not make, or one forgotten).
func (a *ariClients) unreachable(cfg *state.Config, m state.Mapping) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.down[ariKey(cfg, m)]
}

// forget drops client from the run: its server could not be reached.
func (a *ariClients) forget(client *lego.Client) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.clients {
		if c == client {
			a.clients[k] = nil
			a.markDown(k)
		}
	}
}

// ask asks the server's renewal info about leaf (fingerprint fp). It
// returns nil when the server has no renewal info (the lifetime rule
// decides) or could not be reached, which also stops the run asking it
// again. Any other failure (an error status, no usable window, a body or
// Retry-After that does not parse, a certificate without the identifiers
// ARI needs) is recorded without a window, so that the lifetime rule
// decides meanwhile and the server is asked again after its Retry-After
// (within the limits above), else in 6 h; an invalid window always in 6 h
// (RFC 9773, 4.3.3).
func (a *ariClients) ask(client *lego.Client, leaf *x509.Certificate, fp string, now time.Time) *ariAnswer {
	info, err := client.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: leaf})
	var unreachable *url.Error
	switch {
	case errors.Is(err, api.ErrNoARI):
		return nil
	case errors.As(err, &unreachable):
		a.forget(client)
		return nil
	}
	var retryAfter time.Duration
	if err == nil {
		retryAfter = info.RetryAfter
	}
	checkAt := now.Add(ariWait(retryAfter)).UTC().Truncate(time.Second)
	if err != nil {
		return &ariAnswer{fp: fp, info: mappings.ARI{CheckAt: checkAt}}
	}
	start, end := info.SuggestedWindow.Start.UTC(), info.SuggestedWindow.End.UTC()
	switch {
	case start.IsZero():
		// No window: lego reads an error status as an empty answer.
		return &ariAnswer{fp: fp, info: mappings.ARI{CheckAt: checkAt}}
	case !start.Before(end):
		// 4.2: an end at or before the start is invalid, and 4.3.3 makes
		// an invalid answer a long-term error, whatever its Retry-After.
		return &ariAnswer{fp: fp, info: mappings.ARI{CheckAt: now.Add(ariRecheckDefault).UTC().Truncate(time.Second)}}
	}
	// One time chosen at random in the window (RFC 9773, section 4.2),
	// kept while the window stays (keepRenewalTime), so that the many
	// certificates of one window do not renew in the same pass.
	at := start.Add(time.Duration(rand.Int64N(int64(end.Sub(start)))))
	return &ariAnswer{fp: fp, renewAt: at.Truncate(time.Second),
		info: mappings.ARI{WindowStart: start, WindowEnd: end, ExplanationURL: info.ExplanationURL, CheckAt: checkAt}}
}

// replacesRefused reports whether an order failed because of the
// certificate it named as replaced: one this server did not issue (a
// certificate from another CA, put in place by hand), or one already
// replaced. Ordered again without, it renews; before, such a mapping
// failed every attempt and never renewed.
func replacesRefused(err error) bool {
	var problem *legoacme.ProblemDetails
	return errors.As(err, &problem) && (problem.Type == legoacme.AlreadyReplacedErr || problem.Type == "urn:ietf:params:acme:error:malformed")
}

// sameHosts reports whether the certificate covers exactly the mapping's hosts.
func sameHosts(leaf *x509.Certificate, hosts []string) bool {
	return sameHostsPlain(leaf, hosts) || pki.ParseNames(hosts).Equal(leaf)
}
