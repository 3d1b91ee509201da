package mappings

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	set := make(map[string]BackoffMapping)
	for i, meta := range metas {
		if e, ok := BackoffOf(acme[i], meta, now); ok {
			set[acme[i]] = e
		}
	}
	return CountBackoffs(set, now), nil
}

// BackoffOf is mapping id's back-off at now, from its meta, when it backs
// off: what a renewal pass keeps per mapping so that serve counts without
// reading every meta again (CountBackoffs).
func BackoffOf(id string, meta Meta, now time.Time) (BackoffMapping, bool) {
	if meta.Source != state.SourceACME {
		return BackoffMapping{}, false
	}
	reason, ok := meta.BackingOff(now)
	if !ok {
		return BackoffMapping{}, false
	}
	return BackoffMapping{ID: id, Reason: reason, LastError: meta.LastError, RetryAt: meta.RetryAt.UTC()}, true
}

// CountBackoffs counts the back-offs of set still running at now, as
// Backoffs does from the files.
func CountBackoffs(set map[string]BackoffMapping, now time.Time) Backoff {
	var b Backoff
	for _, e := range set {
		if !now.Before(e.RetryAt) {
			continue // over since it was recorded
		}
		switch e.Reason {
		case BackoffRateLimited:
			b.RateLimited++
		case BackoffAccountPaused:
			b.AccountPaused++
		default:
			b.Failed++
		}
		if b.EarliestRetryAt == nil || e.RetryAt.Before(*b.EarliestRetryAt) {
			t := e.RetryAt
			b.EarliestRetryAt = &t
		}
		if e.Reason == BackoffRateLimited || e.Reason == BackoffAccountPaused {
			b.Mappings = append(b.Mappings, e)
		}
	}
	slices.SortFunc(b.Mappings, func(x, y BackoffMapping) int {
		if c := x.RetryAt.Compare(y.RetryAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return b
}

// BackoffWarning is the warning for issuing mapping id now although the
// ACME server refused it until later (rate limited, account paused), as
// "cert issue ID" logs it; "" when it is not refused. An ordinary
// failure's back-off is the point of issuing by hand: no warning.
func BackoffWarning(id string, meta Meta, now time.Time) string {
	switch reason, _ := meta.BackingOff(now); reason {
	case BackoffRateLimited:
		return fmt.Sprintf("the ACME server rate-limited mapping %s until %s; issued anyway because it was named, and the server may refuse it again",
			id, meta.RetryAt.UTC().Format(time.RFC3339))
	case BackoffAccountPaused:
		return fmt.Sprintf("the ACME account is paused for mapping %s; issued anyway because it was named, which fails until the account is unpaused (%s)",
			id, meta.LastError)
	}
	return ""
}
