package mappings

import (
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// TestCountBackoffs: serve counts the back-offs its passes kept as
// Backoffs counts them from the files: by reason, a back-off over since
// it was kept left out, the earliest retry of those left.
func TestCountBackoffs(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	meta := func(reason string, in time.Duration) Meta {
		return Meta{Source: state.SourceACME, BackoffReason: reason, RetryAt: now.Add(in), LastError: "x"}
	}
	set := map[string]BackoffMapping{}
	for id, m := range map[string]Meta{
		"rl":     meta(BackoffRateLimited, 2*time.Hour),
		"paused": meta(BackoffAccountPaused, time.Hour),
		"failed": meta("", 30*time.Minute),
	} {
		e, ok := BackoffOf(id, m, now)
		if !ok {
			t.Fatalf("%s: not backing off", id)
		}
		set[id] = e
	}
	if _, ok := BackoffOf("over", meta(BackoffRateLimited, -time.Second), now); ok {
		t.Error("a back-off that ended is kept")
	}
	if _, ok := BackoffOf("self", Meta{Source: state.SourceSelfSigned, RetryAt: now.Add(time.Hour)}, now); ok {
		t.Error("a mapping that is not ACME is kept")
	}
	for _, tc := range []struct {
		name               string
		at                 time.Time
		rl, paused, failed int
		earliest           time.Duration
		mappings           string
	}{
		{"all running", now, 1, 1, 1, 30 * time.Minute, "paused rl"},
		{"the failure's over", now.Add(45 * time.Minute), 1, 1, 0, time.Hour, "paused rl"},
		{"only the rate limit", now.Add(90 * time.Minute), 1, 0, 0, 2 * time.Hour, "rl"},
	} {
		b := CountBackoffs(set, tc.at)
		var ids []string
		for _, m := range b.Mappings {
			ids = append(ids, m.ID)
		}
		if b.RateLimited != tc.rl || b.AccountPaused != tc.paused || b.Failed != tc.failed || b.EarliestRetryAt == nil ||
			!b.EarliestRetryAt.Equal(now.Add(tc.earliest)) || strings.Join(ids, " ") != tc.mappings {
			t.Errorf("%s: %+v (mappings %q)", tc.name, b, ids)
		}
	}
	if b := CountBackoffs(set, now.Add(3*time.Hour)); b.Total() != 0 || b.EarliestRetryAt != nil {
		t.Errorf("all over: %+v", b)
	}
}

// TestBackoffWarning: issuing a mapping by hand warns when the ACME server
// refused it until later, not after an ordinary failure.
func TestBackoffWarning(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		meta Meta
		want string
	}{
		{"rate limited", Meta{BackoffReason: BackoffRateLimited, RetryAt: now.Add(time.Hour)}, "rate-limited mapping m until 2026-12-01T13:00:00Z"},
		{"paused", Meta{BackoffReason: BackoffAccountPaused, RetryAt: now.Add(time.Hour), LastError: "unpause at https://x"}, "account is paused for mapping m; issued anyway because it was named, which fails until the account is unpaused (unpause at https://x)"},
		{"failed", Meta{RetryAt: now.Add(time.Hour)}, ""},
		{"rate limit over", Meta{BackoffReason: BackoffRateLimited, RetryAt: now}, ""},
	} {
		got := BackoffWarning("m", tc.meta, now)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
