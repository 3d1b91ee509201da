// Package serve runs everything "p2ptls serve" serves: the management
// listener and the public HTTPS listeners, over one state directory.
package serve

import (
	"context"
	"crypto/x509"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/management"
	"github.com/p2pstream/p2ptls/serve/metrics"
	"github.com/p2pstream/p2ptls/serve/public"
	"github.com/p2pstream/p2ptls/serve/renewal"
	"github.com/p2pstream/p2ptls/state"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// Options configure serve.
type Options struct {
	Store      state.Store
	Log        *slog.Logger
	Management statemgmt.Settings // validated
	// DNSResolvers check DNS-01 propagation for in-process issuance.
	DNSResolvers []string
	// Limits bound every listener, public and management (see edge.Limits).
	Limits edge.Limits
	// MetricsListen, when not empty, is a validated HOST:PORT where
	// /metrics is served over plain HTTP without a token.
	MetricsListen string
	// ListenHost, when not empty, is the host every public listener is
	// bound on instead of its configured one (public.ParseListenHost).
	ListenHost string
	// Version is the build's, for p2ptls_build_info.
	Version string
	// Replica, on a shared store, is this serve's name: its status and
	// back-off count go under runstatus.ReplicasDir, rewritten at least
	// every Heartbeat. Empty on a directory store.
	Replica   string
	Heartbeat time.Duration
}

// Run serves until ctx ends, then shuts everything down gracefully.
func Run(ctx context.Context, o Options) error {
	po := public.Options{Store: o.Store, Log: o.Log, Limits: o.Limits, ListenHost: o.ListenHost, Replica: o.Replica, Heartbeat: o.Heartbeat}
	// A shared store behind a snapshot tells whether it answers.
	health, watched := o.Store.(metrics.StoreHealth)
	if watched {
		po.StoreHealth = health.Health
	}
	pub := public.New(po)
	var mgmtRef atomic.Pointer[management.Server]
	met := metrics.New(metrics.Options{Store: o.Store, Log: o.Log, Public: pub, Version: o.Version, Management: o.Management,
		ManagementCert: func() *x509.Certificate {
			if m := mgmtRef.Load(); m != nil {
				return m.Certificate()
			}
			return nil
		}})
	if watched {
		met.WatchStore(health)
	}
	// Management first: its refusals (mode, files) come before any public
	// listener opens or any runtime status is written.
	mgmt, err := management.Listen(management.Options{Settings: o.Management, Store: o.Store, Log: o.Log, Status: pub.Status, DNSResolvers: o.DNSResolvers, Limits: o.Limits,
		Metrics: met.Handler()})
	if err != nil {
		return err
	}
	mgmtRef.Store(mgmt)
	var plain *metrics.Plain
	if o.MetricsListen != "" {
		if plain, err = metrics.ListenPlain(o.MetricsListen, met.Handler(), o.Limits, o.Log); err != nil {
			mgmt.Close()
			return err
		}
	}
	if err := pub.Start(ctx); err != nil {
		mgmt.Close()
		if plain != nil {
			plain.Close()
		}
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pub.Run(pctx) }()
	go func() {
		defer wg.Done()
		ro := renewal.Options{Store: o.Store, Log: o.Log, DNSResolvers: o.DNSResolvers, Observe: met.ObserveRenewal}
		if o.Replica != "" {
			ro.BackoffFile = runstatus.ReplicaBackoffFile(o.Replica)
		}
		renewal.Run(pctx, ro)
	}()
	wg.Go(func() { met.Run(pctx) })
	if plain != nil {
		wg.Go(func() { plain.Serve(pctx) })
	}
	err = mgmt.Serve(ctx)
	cancel()
	wg.Wait()
	return err
}
