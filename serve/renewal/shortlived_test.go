package renewal

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// freePort is a port on 127.0.0.1 where nothing listens now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitAttempt waits for the loop's next order, generously: pebble takes
// 4-12 s per certificate, more on a loaded machine.
func (l *loop) waitAttempt(t *testing.T, id, what string) observed {
	t.Helper()
	select {
	case o := <-l.observed:
		if o.id != id {
			t.Fatalf("%s: Observe(%q, %v), want mapping %s", what, o.id, o.err, id)
		}
		return o
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s: no attempt observed", what)
		return observed{}
	}
}

// TestShortLivedRenewsOnTimeUnderServe: a 6-day certificate from pebble's
// "shortlived" profile, under serve's loop alone (no cron): "valid", not
// "expiring", right after issue; the loop asks the renewal info (pebble's
// window around two thirds of the lifetime), sleeps at most 10 minutes at
// a time, never renews before the time it chose in the window, and wakes
// at that very time and renews, naming the old certificate in "replaces"
// (pebble marks the order as a replacement).
func TestShortLivedRenewsOnTimeUnderServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pebble")
	}
	ctx := context.Background()
	httpPort := freePort(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: freePort(t), Profiles: true})
	store := state.OpenDir(filepath.Join(t.TempDir(), "state"), 5*time.Second)
	if _, err := acme.Register(ctx, store, acme.RegisterInput{Email: "ops@example.test", Directory: env.DirectoryURL, CAFile: env.CAFile, AgreeTOS: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := state.AddListener(ctx, store, state.Listener{Name: "web", Addr: "127.0.0.1:" + strconv.Itoa(env.TLSPort), HTTPAddr: "127.0.0.1:" + strconv.Itoa(httpPort)}); err != nil {
		t.Fatal(err)
	}
	m := state.Mapping{ID: "short", Listener: "web", Hosts: []string{"short.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01, Profile: "shortlived"}
	if _, _, err := mappings.Add(ctx, store, mappings.Input{Mapping: m}, time.Now()); err != nil {
		t.Fatal(err)
	}

	clock := newFakeClock()
	l := startLoop(t, store, clock, false)
	l.pass(t, "full", "at start")
	if o := l.waitAttempt(t, "short", "first issuance"); o.err != nil {
		t.Fatalf("first issuance: %v\n%s", o.err, env.Logs())
	}
	first, err := mappings.LoadMeta(ctx, store, "short")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := state.LoadConfig(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	// (The real clock: the fake one stopped before pebble's NotBefore.)
	info, details, err := mappings.Show(ctx, store, cfg, "short", time.Now())
	if err != nil || details == nil {
		t.Fatalf("show: %v", err)
	}
	lifetime := details.NotAfter.Sub(details.NotBefore)
	if lifetime > 6*24*time.Hour+time.Minute || lifetime < 5*24*time.Hour {
		t.Fatalf("profile shortlived gave a %v certificate", lifetime)
	}
	if info.Status != mappings.StatusValid {
		t.Errorf("a 6-day certificate right after issue is %q, want valid", info.Status)
	}

	// Follow the loop: each time it sleeps, move the clock to its wake
	// time (at most 10 minutes on), until it renews; bounded in passes
	// (6 days of 10 minutes) and in time.
	var renewAt time.Time // the time chosen in the window, once recorded
	deadline := time.Now().Add(5 * time.Minute)
follow:
	for i := 0; ; i++ {
		if i > 6*24*6 || time.Now().After(deadline) {
			t.Fatalf("no renewal after %d passes, at %s (renewal time %s)", i, clock.Now(), renewAt)
		}
		meta, err := mappings.LoadMeta(ctx, store, "short")
		if err != nil {
			t.Fatal(err)
		}
		if meta.FingerprintSHA256 == first.FingerprintSHA256 && meta.ARI.HasWindow() {
			renewAt = meta.NextRenewalAt
		}
		at := clock.sleeping(t)
		if d := at.Sub(clock.Now()); d > maxSleep {
			t.Fatalf("the loop sleeps %v", d)
		}
		if !renewAt.IsZero() && at.After(renewAt) && clock.Now().Before(renewAt) {
			t.Fatalf("the loop sleeps until %s, past the renewal time %s", at, renewAt)
		}
		clock.advance(at)
		// Wait for the pass to end (the loop asleep again: a renewal
		// takes seconds against pebble), then look for its order.
		clock.sleeping(t)
		for drained := false; !drained; {
			select {
			case <-l.passes: // the hook's channel must not fill up
			default:
				drained = true
			}
		}
		select {
		case o := <-l.observed:
			if o.err != nil {
				t.Fatalf("renewal at %s: %v", at, o.err)
			}
			if renewAt.IsZero() || !at.Equal(renewAt) {
				t.Fatalf("renewed at %s, want the renewal time chosen in the window, %s", at, renewAt)
			}
			break follow
		default:
		}
	}
	meta, err := mappings.LoadMeta(ctx, store, "short")
	if err != nil {
		t.Fatal(err)
	}
	if meta.FingerprintSHA256 == first.FingerprintSHA256 {
		t.Fatal("the renewal left the old certificate in place")
	}
	// Pebble's window for a 6-day certificate: two thirds of the
	// lifetime ± 24 h, so from about day 3 to day 5.
	if off := renewAt.Sub(details.NotBefore); off < 3*24*time.Hour-time.Hour || off > 5*24*time.Hour+time.Hour {
		t.Errorf("renewed %v after issue, want inside pebble's window (day 3 to day 5)", off)
	}
	if logs := env.Logs(); !strings.Contains(logs, "has been marked as replaced") {
		t.Errorf("pebble saw no replacement order (replaces not sent):\n%s", logs)
	}
}
