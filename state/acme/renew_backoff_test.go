package acme

import (
	"context"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// TestRenewReportsBackoffs: a pass reports the mappings backing off, with
// their reason and retry time, from the metas it read (serve counts them
// for status); a fresh certificate is not one.
func TestRenewReportsBackoffs(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		desc   string
		meta   func(*mappings.Meta)
		reason string // "" for none
	}{
		{"fresh", nil, ""},
		{"rate limited", func(m *mappings.Meta) {
			m.Attempts, m.RetryAt, m.BackoffReason, m.LastError = 1, now.Add(time.Hour), mappings.BackoffRateLimited, "rate limited"
		}, mappings.BackoffRateLimited},
		{"failed", func(m *mappings.Meta) { m.Attempts, m.RetryAt, m.LastError = 2, now.Add(time.Hour), "refused" }, mappings.BackoffFailed},
		{"back-off over", func(m *mappings.Meta) { m.Attempts, m.RetryAt = 2, now.Add(-time.Minute) }, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ctx := context.Background()
			srv := ariServer(t, false, nil)
			s := renewState(t, srv, now.Add(-24*time.Hour), 90*24*time.Hour)
			if tc.meta != nil {
				meta, _ := mappings.LoadMeta(ctx, s, "m")
				tc.meta(&meta)
				if err := mappings.SaveMeta(ctx, s, "m", meta); err != nil {
					t.Fatal(err)
				}
			}
			r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			e, ok := r.Backoffs["m"]
			if tc.reason == "" {
				if ok || len(r.Backoffs) != 0 {
					t.Errorf("backoffs %+v, want none", r.Backoffs)
				}
				return
			}
			if !ok || e.Reason != tc.reason || !e.RetryAt.Equal(now.Add(time.Hour)) {
				t.Errorf("backoffs %+v, want m %s until %s", r.Backoffs, tc.reason, now.Add(time.Hour))
			}
		})
	}
}
