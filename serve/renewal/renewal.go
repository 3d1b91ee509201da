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

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// How often serve looks for ACME mappings without a certificate, and how
// often it runs a full renewal pass.
const (
	promptInterval = 5 * time.Second
	renewInterval  = time.Hour
)

// Options configure the loop.
type Options struct {
	Store        state.Store
	Log          *slog.Logger
	DNSResolvers []string
}

// Run issues and renews until ctx ends.
func Run(ctx context.Context, o Options) {
	prompt := time.NewTicker(promptInterval)
	defer prompt.Stop()
	renew := time.NewTicker(renewInterval)
	defer renew.Stop()
	opts := acme.Options{Log: o.Log, DNSResolvers: o.DNSResolvers}
	for {
		select {
		case <-ctx.Done():
			return
		case <-prompt.C:
			if ids := unissued(o.Store, time.Now()); len(ids) > 0 {
				pass(ctx, o, acme.RenewOptions{Options: opts, Only: ids})
			}
		case <-renew.C:
			pass(ctx, o, acme.RenewOptions{Options: opts})
		}
	}
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

// unissued lists ACME mappings that have no certificate and are not
// backing off after a failure.
func unissued(s state.Store, now time.Time) []string {
	cfg, err := state.LoadConfig(s)
	if err != nil {
		return nil
	}
	var ids []string
	for _, m := range cfg.Mappings {
		if m.Source != state.SourceACME {
			continue
		}
		if _, err := mappings.Load(s, m); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if meta, err := mappings.LoadMeta(s, m.ID); err == nil && now.Before(meta.RetryAt) {
			continue
		}
		ids = append(ids, m.ID)
	}
	return ids
}
