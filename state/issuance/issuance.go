// Package issuance is the one way to give a mapping a new certificate now:
// an ACME order for an ACME mapping, a new key and certificate for a
// self-signed one, and a refusal that says where the certificate comes
// from for an uploaded or on-disk one. It also holds which mappings "cert
// issue --all" takes, and which ACME mappings still wait for their first
// certificate. "cert issue" and POST /api/v1/mappings/{id}/issue only parse,
// call it and print; each mapping is one change of the state, under the
// lock (state/acme, state/mappings), and an ACME order runs before it,
// outside the lock, under the mapping's claim.
package issuance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// Options of an issuance.
type Options struct {
	ACME acme.Options
	// BeforeOrder, when set, runs just before an ACME order, which may take
	// minutes (DNS-01 propagation): the API extends its write deadline.
	BeforeOrder func()
}

// Issue gives mapping id a new certificate now, whether or not it is due.
// An ACME failure is recorded in the mapping (acme.Attempted reports it)
// and the previous certificate keeps serving; manual and file mappings are
// refused (fault.Failure), with a hint saying how to replace theirs.
func Issue(ctx context.Context, s state.Store, id string, now time.Time, o Options) error {
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return err
	}
	return issue(ctx, s, cfg, id, now, o)
}

// issue is Issue with the config already loaded: cfg decides which way
// mapping id goes. It may be older than the state: the source is decided
// again under the lock, where acme.Issue refuses a mapping that is no
// longer ACME and mappings.Regenerate one that is ACME now.
func issue(ctx context.Context, s state.Store, cfg *state.Config, id string, now time.Time, o Options) error {
	m, ok := cfg.Mapping(id)
	if !ok {
		return fault.NotFoundf("see 'p2ptls mapping list' for the existing ones", "mapping %q does not exist", id)
	}
	switch m.Source {
	case state.SourceACME:
		if o.BeforeOrder != nil {
			o.BeforeOrder()
		}
		return acme.Issue(ctx, s, id, now, o.ACME)
	case state.SourceSelfSigned:
		return mappings.Regenerate(ctx, s, id, now)
	}
	if err := mappings.Renewable(*m); err != nil {
		return err
	}
	return fault.Failf("", "mapping %q has source %q, which p2ptls cannot issue", id, m.Source)
}

// Selection names the mappings of "cert issue": IDs, in the order given,
// or, with All, every ACME and self-signed mapping without a valid
// certificate (pending, failed, missing, expiring or expired) that is not
// backing off after a failed attempt, in the order of p2ptls.toml; with
// Force too, every ACME and self-signed mapping, backing off or not. A
// named mapping is issued even while it backs off: the operator asked for
// it (after unpausing the account, or fixing DNS), and a warning says
// that the ACME server refused it until then.
type Selection struct {
	IDs   []string
	All   bool
	Force bool
}

// Skip is a mapping that All leaves out, and why.
type Skip struct {
	ID, Reason string
}

// Select returns the ids sel names and, for All, the mappings it leaves out.
// Named ids are returned as given: Issue says which do not exist.
func Select(ctx context.Context, s state.Store, sel Selection, now time.Time) ([]string, []Skip, error) {
	if !sel.All {
		warnBackingOff(ctx, s, sel.IDs, now)
		return sel.IDs, nil, nil
	}
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	list, err := mappings.List(ctx, s, cfg, "", now)
	if err != nil {
		return nil, nil, err
	}
	var ids []string
	var skipped []Skip
	for _, m := range list {
		switch {
		case m.Source != state.SourceACME && m.Source != state.SourceSelfSigned:
			skipped = append(skipped, Skip{m.ID, fmt.Sprintf("source %s: p2ptls cannot issue its certificate", m.Source)})
		case m.Status == mappings.StatusValid && !sel.Force:
			skipped = append(skipped, Skip{m.ID, "its certificate is valid (--force issues it anyway)"})
		case m.BackoffReason != "" && !sel.Force:
			skipped = append(skipped, Skip{m.ID, fmt.Sprintf("backing off (%s) until %s (--force issues it anyway)", m.BackoffReason, m.RetryAt.Format(time.RFC3339))})
		default:
			ids = append(ids, m.ID)
		}
	}
	return ids, skipped, nil
}

// warnBackingOff warns about the named ACME mappings the ACME server
// refused until later (rate limited, account paused): issuing them now
// is asked for, and likely refused again. An ordinary failure's back-off
// is the point of naming a mapping, and is not warned about.
func warnBackingOff(ctx context.Context, s state.Store, ids []string, now time.Time) {
	for _, id := range ids {
		meta, err := mappings.LoadMeta(ctx, s, id)
		if err != nil {
			continue // Issue says what is wrong with it
		}
		switch reason, _ := meta.BackingOff(now); reason {
		case mappings.BackoffRateLimited:
			slog.Warn("the ACME server rate-limited this mapping; issuing it anyway because it was named, and the server may refuse it again",
				"mapping", id, "retry_at", meta.RetryAt.UTC().Format(time.RFC3339))
		case mappings.BackoffAccountPaused:
			slog.Warn("the ACME account is paused for this mapping; issuing it anyway because it was named, which fails until the account is unpaused",
				"mapping", id, "last_error", meta.LastError)
		}
	}
}

// Report is what "cert issue" did, by mapping id; its JSON is the command's
// output. Every id issued is in Issued, Failed or Skipped (another process
// was issuing it), in the order given.
type Report struct {
	Issued  []string          `json:"issued"`
	Failed  []string          `json:"failed"`
	Skipped []string          `json:"skipped"`
	Errors  map[string]string `json:"errors"`

	errs []error // of Failed, in order
	busy error   // of the first one skipped
}

// Err is the error of the run as a whole: nil when every mapping was
// issued (or skipped among others), the mapping's own error when it was
// the only one, else a failure that counts and names the mappings that
// failed. A mapping skipped because another process is issuing it is no
// failure, unless it was all the run was asked for.
func (r *Report) Err() error {
	switch {
	case len(r.Failed) == 0 && len(r.Issued) == 0 && len(r.Skipped) == 1:
		return r.busy
	case len(r.Failed) == 0:
		return nil
	case len(r.Issued) == 0 && len(r.Failed) == 1 && len(r.Skipped) == 0:
		return r.errs[0]
	}
	return &fault.Error{Kind: fault.Failure,
		Msg:  fmt.Sprintf("%d of %d mappings failed: %s", len(r.Failed), len(r.Issued)+len(r.Failed)+len(r.Skipped), strings.Join(r.Failed, ", ")),
		Hint: "'p2ptls cert list' shows each one's last error"}
}

// Run issues the mappings ids (from Select), at most o.ACME.Limit at once
// (ACME orders take seconds to minutes, each under its mapping's claim and
// outside the state lock), each as its own change: one that fails does not
// stop the others. done, when set, is called after each mapping with its
// error (nil when issued), one call at a time, in the order of ids, as
// is the report. The config is read once, not once per
// mapping; when it does not load, nothing is tried and that is the error.
// Once ctx ends no further mapping starts, and those not started are not
// reported.
func Run(ctx context.Context, s state.Store, ids []string, now func() time.Time, o Options, done func(id string, err error)) (*Report, error) {
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	r := &Report{Issued: []string{}, Failed: []string{}, Skipped: []string{}, Errors: map[string]string{}}
	errs := make([]error, len(ids))
	// done is called in the order of ids: a mapping that finished early
	// waits for those before it, so that what a person reads is in order.
	var mu sync.Mutex
	finished := make([]bool, len(ids))
	told := 0
	reached := acme.Bounded(ctx, o.ACME.Limit(cfg), len(ids), func(i int) {
		err := issue(ctx, s, cfg, ids[i], now(), o)
		mu.Lock()
		defer mu.Unlock()
		errs[i], finished[i] = err, true
		for ; told < len(ids) && finished[told]; told++ {
			if done != nil {
				done(ids[told], errs[told])
			}
		}
	})
	for i, id := range ids {
		switch err := errs[i]; {
		case !reached[i]:
		case acme.Busy(err):
			r.Skipped = append(r.Skipped, id)
			if r.busy == nil {
				r.busy = err
			}
		case err != nil:
			r.Failed = append(r.Failed, id)
			r.Errors[id] = strings.Join(strings.Fields(err.Error()), " ")
			r.errs = append(r.errs, err)
		default:
			r.Issued = append(r.Issued, id)
		}
	}
	return r, nil
}

// Pending returns the ACME mappings serve orders for at once, and when the
// earliest back-off ends (zero when none does): those with no certificate
// yet, and those of changed (ids whose files a change touched) whose meta
// asks for a new order (mapping set changed their hosts or ACME settings),
// unless they are backing off after a failed attempt. Only changed ones
// are looked at for the second kind: reading every meta at each change
// would cost a read per ACME mapping, and the timed pass finds the rest.
func Pending(ctx context.Context, s state.Store, now time.Time, changed []string) ([]string, time.Time, error) {
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return nil, time.Time{}, err
	}
	touched := make(map[string]bool, len(changed))
	for _, id := range changed {
		touched[id] = true
	}
	var ids []string
	var retry time.Time
	for _, m := range cfg.Mappings {
		if m.Source != state.SourceACME {
			continue
		}
		names, _ := mappings.CertFiles(m)
		_, err := s.Stat(ctx, names[0])
		missing := errors.Is(err, fs.ErrNotExist)
		if !missing && !touched[m.ID] {
			continue
		}
		meta, err := mappings.LoadMeta(ctx, s, m.ID)
		if !missing && (err != nil || meta.Reissue == "") {
			continue
		}
		if err == nil && now.Before(meta.RetryAt) {
			if retry.IsZero() || meta.RetryAt.Before(retry) {
				retry = meta.RetryAt
			}
			continue
		}
		ids = append(ids, m.ID)
	}
	return ids, retry, nil
}
