package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pstream/p2ptls/serve/public"
)

// The metrics' names and labels: alert rules (deploy/prometheus) and the
// README's table use them; changing one breaks both. No label ever holds a
// name a client sent (SNI), nor a certificate's common name.
var (
	mappingLabels = []string{"listener", "mapping", "source"}

	descNotAfter = prometheus.NewDesc("p2ptls_cert_not_after_seconds",
		"End of validity of the mapping's usable certificate, in Unix seconds.", mappingLabels, nil)
	descNotBefore = prometheus.NewDesc("p2ptls_cert_not_before_seconds",
		"Start of validity of the mapping's usable certificate, in Unix seconds.", mappingLabels, nil)
	descRenewalAt = prometheus.NewDesc("p2ptls_cert_renewal_at_seconds",
		"When the mapping's certificate is due for renewal (as 'cert list' shows next_renewal_at), in Unix seconds.", mappingLabels, nil)
	descRenewalFailures = prometheus.NewDesc("p2ptls_cert_renewal_failures_total",
		"Failed renewal or issuance attempts serve's renewal loop made for the ACME mapping since serve started.", mappingLabels, nil)
	descLastRenewalOK = prometheus.NewDesc("p2ptls_cert_last_renewal_success",
		"1 unless the ACME mapping's last issuance or renewal attempt (by serve or cron) failed, then 0.", mappingLabels, nil)
	descFallback = prometheus.NewDesc("p2ptls_fallback_handshakes_total",
		"Handshakes for a name no mapping with a usable certificate serves (fallback served or rejected), since the listener opened.", []string{"listener"}, nil)
	descHandshakes = prometheus.NewDesc("p2ptls_handshakes_total",
		"TLS handshakes by result (ok, resumed, fallback, rejected, challenge, failed), since the listener opened.", []string{"listener", "result"}, nil)
	descReloads = prometheus.NewDesc("p2ptls_reloads_total",
		"Reloads of the state after a change, by result (success, failure), since serve started.", []string{"result"}, nil)
	descLastReloadOK = prometheus.NewDesc("p2ptls_last_reload_success_timestamp_seconds",
		"When the last reload that succeeded ended (serve's start before any), in Unix seconds.", nil, nil)
	descCANotAfter = prometheus.NewDesc("p2ptls_ca_not_after_seconds",
		"End of validity of the management CA in the state, in Unix seconds.", nil, nil)
	descMgmtNotAfter = prometheus.NewDesc("p2ptls_management_cert_not_after_seconds",
		"End of validity of the certificate the management listener serves, in Unix seconds.", nil, nil)
	descBuildInfo = prometheus.NewDesc("p2ptls_build_info",
		"Always 1; the labels name the build.", []string{"version", "goversion"}, nil)
)

// collector reports the snapshot and the live counters at scrape time.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNotAfter, descNotBefore, descRenewalAt, descRenewalFailures, descLastRenewalOK,
		descFallback, descHandshakes, descReloads, descLastReloadOK, descCANotAfter, descMgmtNotAfter, descBuildInfo} {
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
	if snap.caNotAfter != 0 {
		ch <- prometheus.MustNewConstMetric(descCANotAfter, prometheus.GaugeValue, float64(snap.caNotAfter))
	}
	for _, l := range snap.listeners {
		ch <- prometheus.MustNewConstMetric(descFallback, prometheus.CounterValue, float64(l.FallbackHandshakes()), l.Name)
		for result, n := range l.Handshakes() {
			ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(n), l.Name, public.HandshakeResults[result])
		}
	}
	failures := m.renewalFailures()
	for i := range snap.mappings {
		s := &snap.mappings[i]
		if s.cert {
			ch <- prometheus.MustNewConstMetric(descNotAfter, prometheus.GaugeValue, float64(s.notAfter), s.listener, s.id, s.source)
			ch <- prometheus.MustNewConstMetric(descNotBefore, prometheus.GaugeValue, float64(s.notBefore), s.listener, s.id, s.source)
			ch <- prometheus.MustNewConstMetric(descRenewalAt, prometheus.GaugeValue, float64(s.renewAt), s.listener, s.id, s.source)
		}
		if s.acme {
			ch <- prometheus.MustNewConstMetric(descRenewalFailures, prometheus.CounterValue, float64(failures[s.id]), s.listener, s.id, s.source)
			ch <- prometheus.MustNewConstMetric(descLastRenewalOK, prometheus.GaugeValue, b2f(s.renewOK), s.listener, s.id, s.source)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
