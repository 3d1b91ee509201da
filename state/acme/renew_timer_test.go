package acme

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// timerRuns are the times the shipped timer starts 'cert renew' from
// start for days: 00:00 and 12:00 UTC, each up to 1 h late
// (RandomizedDelaySec=1h), drawn from rnd.
func timerRuns(start time.Time, days int, rnd *rand.Rand) []time.Time {
	var runs []time.Time
	day0 := start.Truncate(24 * time.Hour)
	for d := range days + 1 {
		for _, h := range []int{0, 12} {
			at := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(rnd.Int64N(int64(time.Hour))))
			if at.After(start) {
				runs = append(runs, at)
			}
		}
	}
	return runs
}

// TestTimerRenewsShortLivedOnTime: 'cert renew' run by the shipped timer
// (twice a day, up to 1 h late; RunEvery TimerInterval, as the command
// sets it) decides a 6-day certificate due at the right run: without ARI,
// the first run after half its lifetime (3 days left, 2.5 at worst); with
// a window like pebble's (two thirds of the lifetime ± 24 h), at the last
// run before the time chosen in it (RFC 9773, 4.2) or at most the timer's
// 1 h of delay after it. Before RunEvery, a time chosen just after one run
// waited for the next, up to 13 h, past the window.
func TestTimerRenewsShortLivedOnTime(t *testing.T) {
	ctx := context.Background()
	issued := time.Date(2026, 6, 1, 5, 17, 0, 0, time.UTC)
	const lifetime = 6 * 24 * time.Hour
	for seed := range uint64(12) {
		for _, withARI := range []bool{false, true} {
			rnd := rand.New(rand.NewPCG(seed, 16))
			var a *ariScript
			srv := ariServer(t, false, nil)
			if withARI {
				a = newARIScript(t)
				srv = a.srv
			}
			s := renewState(t, srv, issued, lifetime)
			cfg, err := state.LoadConfig(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			c, err := mappings.Load(ctx, s, cfg.Mappings[0])
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Chain[0]
			if withARI {
				ideal := leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
				a.answer(ideal.Add(-24*time.Hour), ideal.Add(24*time.Hour), "", "21600")
			}
			var attemptAt time.Time
			for _, run := range timerRuns(issued, 6, rnd) {
				r, err := Renew(ctx, s, func() time.Time { return run }, RenewOptions{Options: quiet, RunEvery: TimerInterval})
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Renewed)+len(r.Failed) > 0 { // due: the order failed (the test server issues nothing)
					attemptAt = run
					break
				}
			}
			if attemptAt.IsZero() {
				t.Fatalf("seed %d, ARI %v: never due", seed, withARI)
			}
			left := leaf.NotAfter.Sub(attemptAt)
			if !withARI {
				at := pki.RenewalTime(leaf)
				if attemptAt.Before(at) || attemptAt.Sub(at) > 13*time.Hour || left < 60*time.Hour {
					t.Errorf("seed %d, no ARI: due at %s, renewal time %s (%v left), want the first run after it", seed, attemptAt, at, left)
				}
				continue
			}
			meta, err := mappings.LoadMeta(ctx, s, "m")
			if err != nil {
				t.Fatal(err)
			}
			renewAt := meta.NextRenewalAt
			// RFC 9773, 4.2: at the last run before the time chosen (at
			// most 12 h before it, the interval), or the timer's 1 h of
			// delay after it; never before the window's start less a
			// run, nor after its end plus the delay.
			if attemptAt.Before(renewAt.Add(-TimerInterval)) || attemptAt.After(renewAt.Add(time.Hour)) ||
				attemptAt.Before(meta.ARI.WindowStart.Add(-TimerInterval)) || attemptAt.After(meta.ARI.WindowEnd.Add(time.Hour)) {
				t.Errorf("seed %d, ARI: due at %s, window %s to %s, time chosen %s: want within 12 h before to 1 h after the time chosen", seed, attemptAt, meta.ARI.WindowStart, meta.ARI.WindowEnd, renewAt)
			}
		}
	}
}
