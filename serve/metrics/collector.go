package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pstream/p2ptls/serve/public"
)

// The metrics' names and labels: alert rules (deploy/prometheus) and the
// README's table use them; changing one breaks both. No label ever holds a
// name a client sent (SNI), nor a certificate's common name.
var (
	descFallback = prometheus.NewDesc("p2ptls_fallback_handshakes_total",
		"Handshakes for a name no mapping with a usable certificate serves (fallback served or rejected), since the listener opened.", []string{"listener"}, nil)
	descHandshakes = prometheus.NewDesc("p2ptls_handshakes_total",
		"TLS handshakes by result (ok, resumed, fallback, rejected, challenge, failed), since the listener opened.", []string{"listener", "result"}, nil)
	descReloads = prometheus.NewDesc("p2ptls_reloads_total",
		"Reloads of the state after a change, by result (success, failure), since serve started.", []string{"result"}, nil)
	descLastReloadOK = prometheus.NewDesc("p2ptls_last_reload_success_timestamp_seconds",
		"When the last reload that succeeded ended (serve's start before any), in Unix seconds.", nil, nil)
	descCANotAfter = prometheus.NewDesc("p2ptls_ca_not_after_seconds",
		"End of validity of the management CA agents trust (the auto CA, or the top of mode provided's chain), in Unix seconds.", nil, nil)
	descMgmtNotAfter = prometheus.NewDesc("p2ptls_management_cert_not_after_seconds",
		"End of validity of the certificate the management listener serves, in Unix seconds.", nil, nil)
	descACMEBackoff = prometheus.NewDesc("p2ptls_acme_backoff_mappings",
		"Served ACME mappings waiting after a failed attempt, by reason (rate_limited: until the ACME server's Retry-After; account_paused: until the account is unpaused; failed: any other error, exponential back-off).", []string{"reason"}, nil)
	descBuildInfo = prometheus.NewDesc("p2ptls_build_info",
		"Always 1; the labels name the build.", []string{"version", "goversion"}, nil)
)

// collector reports the live counters and what the snapshot holds besides
// the mappings (see render.go) at scrape time.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFallback, descHandshakes, descReloads, descLastReloadOK, descCANotAfter, descMgmtNotAfter, descACMEBackoff, descBuildInfo} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, m.buildInfo()...)
	r := m.o.Public.Reloads()
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(r.OK), "success")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(r.Failed), "failure")
	ch <- prometheus.MustNewConstMetric(descLastReloadOK, prometheus.GaugeValue, float64(r.LastSuccessAt.Unix()))
	if m.o.ManagementCert != nil {
		if cert := m.o.ManagementCert(); cert != nil {
			ch <- prometheus.MustNewConstMetric(descMgmtNotAfter, prometheus.GaugeValue, float64(cert.NotAfter.Unix()))
		}
	}
	snap := m.snap.Load()
	if snap == nil {
		return
	}
	// Back-offs end with time, not with a refresh: counted at the scrape.
	var backoffs [len(backoffReasons)]int
	now := time.Now().Unix()
	for i := range snap.mappings {
		if s := &snap.mappings[i]; s.backoff != 0 && s.retryAt > now {
			backoffs[s.backoff]++
		}
	}
	for i, reason := range backoffReasons[1:] {
		ch <- prometheus.MustNewConstMetric(descACMEBackoff, prometheus.GaugeValue, float64(backoffs[i+1]), reason)
	}
	if snap.caNotAfter != 0 {
		ch <- prometheus.MustNewConstMetric(descCANotAfter, prometheus.GaugeValue, float64(snap.caNotAfter))
	}
	for _, l := range snap.listeners {
		ch <- prometheus.MustNewConstMetric(descFallback, prometheus.CounterValue, float64(l.FallbackHandshakes()), l.Name)
		for result, n := range l.Handshakes() {
			ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(n), l.Name, public.HandshakeResults[result])
		}
	}
}
