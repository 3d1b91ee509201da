package mappings

import (
	"context"
	"slices"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/parallel"
)

// Backoff counts the ACME mappings backing off after a failed attempt, by
// reason: "status" and the metrics show it. EarliestRetryAt is when the
// first of them is tried again (nil when none backs off).
type Backoff struct {
	RateLimited     int        `json:"rate_limited"`
	AccountPaused   int        `json:"account_paused"`
	Failed          int        `json:"failed"`
	EarliestRetryAt *time.Time `json:"earliest_retry_at"`
	// Mappings are the ones rate limited or paused, by id, for doctor:
	// those the operator acts on (an ordinary failure shows in cert list).
	Mappings []BackoffMapping `json:"-"`
}

// BackoffMapping is one mapping the ACME server refused until later.
type BackoffMapping struct {
	ID, Reason, LastError string
	RetryAt               time.Time
}

// Total is the number of mappings backing off.
func (b Backoff) Total() int { return b.RateLimited + b.AccountPaused + b.Failed }

// Backoffs counts the ACME mappings of cfg backing off at now. It reads
// each ACME mapping's meta.toml through the certs memo (a stat when it has
// not changed), one worker per core, and nothing of the other mappings.
func Backoffs(ctx context.Context, s state.Store, cfg *state.Config, now time.Time) (Backoff, error) {
	var acme []string
	for _, m := range cfg.Mappings {
		if m.Source == state.SourceACME {
			acme = append(acme, m.ID)
		}
	}
	if len(acme) == 0 {
		return Backoff{}, nil // not even the memo to load
	}
	sums := NewSummaries(s)
	defer sums.Save()
	metas := make([]Meta, len(acme))
	parallel.Each(len(acme), func(i int) bool {
		metas[i], _ = sums.Meta(ctx, acme[i]) // an unreadable one shows in cert list
		return ctx.Err() == nil
	})
	if err := ctx.Err(); err != nil {
		return Backoff{}, err
	}
	var b Backoff
	for i, meta := range metas {
		reason, ok := meta.BackingOff(now)
		if !ok || meta.Source != state.SourceACME {
			continue
		}
		switch reason {
		case BackoffRateLimited:
			b.RateLimited++
		case BackoffAccountPaused:
			b.AccountPaused++
		default:
			b.Failed++
		}
		if b.EarliestRetryAt == nil || meta.RetryAt.Before(*b.EarliestRetryAt) {
			t := meta.RetryAt.UTC()
			b.EarliestRetryAt = &t
		}
		if reason == BackoffRateLimited || reason == BackoffAccountPaused {
			b.Mappings = append(b.Mappings, BackoffMapping{ID: acme[i], Reason: reason, LastError: meta.LastError, RetryAt: meta.RetryAt.UTC()})
		}
	}
	slices.SortFunc(b.Mappings, func(x, y BackoffMapping) int { return x.RetryAt.Compare(y.RetryAt) })
	return b, nil
}
