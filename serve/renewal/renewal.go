// Package renewal is serve's in-process ACME loop: new ACME mappings are
// issued promptly, and every certificate is renewed when due, with the same
// code and under the same lock as "p2ptls cert renew" from cron.
package renewal

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// How often serve looks for ACME mappings without a certificate, and how
// often it runs a full renewal pass. Six hours follows the Retry-After that
// ACME servers give for renewal info, and keeps a state of 100k mappings
// from asking the server about each of them every hour. promptInterval is
// a variable only so that a test can shorten it.
var promptInterval = 5 * time.Second

const renewInterval = 6 * time.Hour

// testHook, when a test sets it, runs at the start of every prompt pass so
// that the test can make it panic. Production code never sets it.
var testHook func()

// Options configure the loop.
type Options struct {
	Store        state.Store
	Log          *slog.Logger
	DNSResolvers []string
}

// Run issues and renews until ctx ends. A panic in one pass (an odd
// mapping the ACME code trips over) is recovered and counted, and the loop
// goes on with the next tick.
func Run(ctx context.Context, o Options) {
	prompt := time.NewTicker(promptInterval)
	defer prompt.Stop()
	renew := time.NewTicker(renewInterval)
	defer renew.Stop()
	opts := acme.Options{Log: o.Log, DNSResolvers: o.DNSResolvers}
	var seen string     // the state revision last scanned
	var retry time.Time // the earliest back-off that ends
	for {
		select {
		case <-ctx.Done():
			return
		case <-prompt.C:
			seen, retry = promptPass(ctx, o, opts, seen, retry)
		case <-renew.C:
			fullPass(ctx, o, opts)
		}
	}
}

// promptPass issues ACME mappings that have no certificate yet. It returns
// the revision it scanned and the earliest back-off end; after a panic,
// what it had set by then.
func promptPass(ctx context.Context, o Options, opts acme.Options, seen string, retry time.Time) (string, time.Time) {
	defer edge.Recover(o.Log, "certificate issuance loop")
	if testHook != nil {
		testHook()
	}
	// Scanning 100k mappings costs; do it only when the state changed or
	// a back-off ended.
	now := time.Now()
	rev := revision(ctx, o.Store)
	if rev == seen && (retry.IsZero() || now.Before(retry)) {
		return seen, retry
	}
	seen = rev
	var ids []string
	ids, retry = unissued(ctx, o.Store, now)
	if len(ids) > 0 {
		pass(ctx, o, acme.RenewOptions{Options: opts, Only: ids})
		seen = "" // the pass changed the state: look again
	}
	return seen, retry
}

func fullPass(ctx context.Context, o Options, opts acme.Options) {
	defer edge.Recover(o.Log, "renewal loop")
	pass(ctx, o, acme.RenewOptions{Options: opts})
}

func pass(ctx context.Context, o Options, ro acme.RenewOptions) {
	r, err := acme.Renew(ctx, o.Store, time.Now, ro)
	if err != nil {
		o.Log.Error("renewal pass failed", "err", err)
		return
	}
	if len(r.Renewed)+len(r.Failed) > 0 {
		o.Log.Info("renewal pass", "renewed", r.Renewed, "failed", r.Failed)
	}
}

// revision is what changes with every change of the desired state.
func revision(ctx context.Context, s state.Store) string {
	rev, _ := s.Read(ctx, state.RevisionFile)
	var cfg string
	if info, err := s.Stat(ctx, state.ConfigFile); err == nil {
		cfg = info.ModTime().String() + info.Name()
	}
	return string(rev) + cfg
}

// unissued lists ACME mappings that have no certificate and are not
// backing off after a failure, and when the earliest back-off ends.
func unissued(ctx context.Context, s state.Store, now time.Time) ([]string, time.Time) {
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return nil, time.Time{}
	}
	var ids []string
	var retry time.Time
	for _, m := range cfg.Mappings {
		if m.Source != state.SourceACME {
			continue
		}
		names, _ := mappings.CertFiles(m)
		if _, err := s.Stat(ctx, names[0]); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if meta, err := mappings.LoadMeta(ctx, s, m.ID); err == nil && now.Before(meta.RetryAt) {
			if retry.IsZero() || meta.RetryAt.Before(retry) {
				retry = meta.RetryAt
			}
			continue
		}
		ids = append(ids, m.ID)
	}
	return ids, retry
}
