package doctor

import (
	"context"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// TestBackoff: a rate-limited and a paused ACME mapping warn, each with
// its fix; an ordinary failure's back-off and a back-off that has passed
// do not.
func TestBackoff(t *testing.T) {
	s := acmeState(t)
	for _, id := range []string{"rl", "paused", "failed"} {
		addMapping(t, s, acmeMapping(id, "web", "http-01", "", id+".example.com"))
	}
	want(t, run(input(s), checkBackoff), IDBackoff, OK, "none of 3 ACME mappings")

	save := func(id string, m mappings.Meta) {
		t.Helper()
		m.Source, m.LastAttemptAt, m.Attempts = state.SourceACME, now0, 1
		if err := mappings.SaveMeta(context.Background(), s, id, m); err != nil {
			t.Fatal(err)
		}
	}
	save("failed", mappings.Meta{LastError: "boom", RetryAt: now0.Add(time.Hour), BackoffReason: mappings.BackoffFailed})
	want(t, run(input(s), checkBackoff), IDBackoff, OK)

	save("rl", mappings.Meta{LastError: "rate limited by the ACME server until 2026-03-01T13:00:00Z", RetryAt: now0.Add(time.Hour), BackoffReason: mappings.BackoffRateLimited})
	save("paused", mappings.Meta{LastError: "the ACME account is paused: unpause at https://portal.example/unpause?jwt=x", RetryAt: now0.Add(24 * time.Hour), BackoffReason: mappings.BackoffAccountPaused})
	c := run(input(s), checkBackoff)
	want(t, c, IDBackoff, Warn, "mapping rl: rate limited by the ACME server until", "mapping paused: the ACME account is paused", "https://portal.example/unpause?jwt=x")
	wantHint(t, c, "open the unpause link")
	wantHint(t, c, "cert issue paused")

	// Once the retry time has passed, nothing backs off.
	in := input(s)
	in.Now = now0.Add(25 * time.Hour)
	want(t, run(in, checkBackoff), IDBackoff, OK)
}
