package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	storesnap "github.com/p2pstream/p2ptls/state/snapshot"
)

// The shared store's metrics (serve on --store): alert rules use them.
var (
	descStoreConnected = prometheus.NewDesc("p2ptls_store_connected",
		"1 while the shared store answers; 0 while serve serves its snapshot, and renewals and changes wait.", nil, nil)
	descSnapshotAge = prometheus.NewDesc("p2ptls_store_snapshot_age_seconds",
		"How far the snapshot serve falls back to may be behind the shared store: 0 while it is current, else the seconds since it was last brought up to date.", nil, nil)
)

// StoreHealth is what the store metrics read: *storesnap.Store.
type StoreHealth interface{ Health() storesnap.Health }

// WatchStore adds the shared store's metrics, read from h at every
// scrape. Call it once, before serving scrapes.
func (m *Metrics) WatchStore(h StoreHealth) {
	m.reg.MustRegister(storeCollector{h: h, now: time.Now})
}

type storeCollector struct {
	h   StoreHealth
	now func() time.Time
}

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStoreConnected
	ch <- descSnapshotAge
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h.Health()
	connected := 0.0
	if h.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descStoreConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descSnapshotAge, prometheus.GaugeValue, h.Age(c.now()).Seconds())
}
