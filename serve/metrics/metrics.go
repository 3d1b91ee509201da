// Package metrics is serve's Prometheus metrics: the validity of every
// served mapping's certificate, renewal outcomes, handshakes by result,
// reloads, the management certificates, the build, and the Go and process
// collectors.
//
// Nothing here runs on the handshake path: the public listeners count
// handshakes with one atomic add each (serve/public), and a scrape reads
// those counters and a snapshot of the mappings. The snapshot is rebuilt
// in the background (Run) after every reload and at least every
// refreshEvery, from the state's certificate summaries (the memo "cert
// list" reads through), so a scrape of 100k mappings reads no file.
package metrics

import (
	"crypto/x509"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/p2pstream/p2ptls/serve/public"
	"github.com/p2pstream/p2ptls/state"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// Served is what metrics reads of the public listeners (*public.Server).
type Served interface {
	Metrics(fn func(listener string, m state.Mapping)) []public.ListenerCounts
	Reloads() public.Reloads
}

// Options configure the metrics.
type Options struct {
	Store  state.Store
	Log    *slog.Logger
	Public Served
	// ManagementCert is the certificate the management listener serves
	// now; nil (or a nil result) when it serves none (mode off).
	ManagementCert func() *x509.Certificate
	// Version is the build's version, for p2ptls_build_info.
	Version string
	// Management is serve's management settings (validated): which CA
	// p2ptls_ca_not_after_seconds describes.
	Management statemgmt.Settings
}

// Metrics collects serve's metrics; see Handler and Run.
type Metrics struct {
	o    Options
	reg  *prometheus.Registry
	snap atomic.Pointer[snapshot]
	// scrapes holds a token per scrape in progress (see maxScrapes).
	scrapes chan struct{}
	// wanted is closed by the first scrape: until then Run builds no
	// snapshot, so a serve nobody scrapes pays nothing for the mappings'
	// series (at 100k a build is 0.7 s of CPU and 145 MB of garbage,
	// which would land on serve's start and raise its heap goal).
	wanted     chan struct{}
	wantedOnce sync.Once
	// ready is closed once the first snapshot is built.
	ready     chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex
	failures map[string]uint64 // renewal failures by mapping id, since start
}

// New prepares the metrics; Run keeps the mappings' snapshot current.
func New(o Options) *Metrics {
	m := &Metrics{o: o, reg: prometheus.NewRegistry(), failures: map[string]uint64{}, scrapes: make(chan struct{}, maxScrapes),
		wanted: make(chan struct{}), ready: make(chan struct{})}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collector{m},
	)
	return m
}

// ObserveRenewal is the renewal loop's report of one attempt on mapping
// id: a failure (err not nil) is counted in
// p2ptls_cert_renewal_failures_total.
func (m *Metrics) ObserveRenewal(id string, err error) {
	if err == nil {
		return
	}
	m.mu.Lock()
	m.failures[id]++
	m.mu.Unlock()
}

// renewalFailures copies the failure counts.
func (m *Metrics) renewalFailures() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.failures))
	for id, n := range m.failures {
		out[id] = n
	}
	return out
}

// buildInfo is p2ptls_build_info's labels.
func (m *Metrics) buildInfo() []string {
	v := m.o.Version
	if v == "" {
		v = "dev"
	}
	return []string{v, runtime.Version()}
}
