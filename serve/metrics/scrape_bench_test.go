package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// countingWriter is a ResponseWriter that counts the body.
type countingWriter struct {
	h http.Header
	n int64
}

func (w *countingWriter) Header() http.Header         { return w.h }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

// benchMetrics is a Metrics whose snapshot holds n ACME mappings with
// certificates (every per-mapping series: five each), on two listeners.
func benchMetrics(n int) *Metrics {
	m := New(Options{Log: discard, Public: &fakeServed{}})
	now := time.Now()
	b := newBuilder(n)
	for i := range n {
		id := "m" + strconv.Itoa(i) + "-example-com"
		b.add([]string{"web", "api"}[i%2], id, state.SourceACME, sample{
			cert: true, notBefore: now.Unix(), notAfter: now.Add(90 * 24 * time.Hour).Unix(), renewAt: now.Add(60 * 24 * time.Hour).Unix(),
			acme: true, renewOK: i%100 != 0})
		if i%1000 == 0 {
			m.ObserveRenewal(id, io.EOF)
		}
	}
	b.snap.caNotAfter = now.Unix()
	m.publish(b.snap)
	return m
}

// processCPU is the CPU time (user and system) the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScrape is one scrape of 100k mappings' series (500k samples),
// as Prometheus asks for it (gzip) and uncompressed; bytes/scrape is the
// answer's size. The goal is under a second. Through the registry (a
// const metric per sample) it was 14.5 s (2.4 s of CPU) per scrape.
func BenchmarkScrape(b *testing.B) {
	m := benchMetrics(benchN)
	h := m.Handler()
	for _, enc := range []string{"gzip", "identity"} {
		b.Run("n="+strconv.Itoa(benchN)+"/"+enc, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept-Encoding", enc)
			req.Header.Set("Accept", "text/plain;version=0.0.4")
			b.ReportAllocs()
			var size int64
			cpu := processCPU()
			for b.Loop() {
				w := &countingWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				size = w.n
			}
			// CPU time, unlike ns/op, is not stretched by other processes
			// on a shared machine.
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

// TestScrapeOfManyMappings: every mapping's series are there, once.
func TestScrapeOfManyMappings(t *testing.T) {
	const n = 2000
	fams := scrape(t, benchMetrics(n).Handler())
	for _, name := range []string{"p2ptls_cert_not_after_seconds", "p2ptls_cert_not_before_seconds", "p2ptls_cert_renewal_at_seconds",
		"p2ptls_cert_renewal_failures_total", "p2ptls_cert_last_renewal_success"} {
		if got := len(fams[name].GetMetric()); got != n {
			t.Errorf("%s: %d series, want %d", name, got, n)
		}
	}
	if got := series(fams, "p2ptls_cert_renewal_failures_total", "mapping")["mapping=m1000-example-com"]; got != 1 {
		t.Errorf("renewal failures of m1000: %v, want 1", got)
	}
}

// benchN is BenchmarkScrape's mapping count.
var benchN = 100_000

// BenchmarkRefresh rebuilds the snapshot of a generated state, as Run does
// after a reload: P2PTLS_BENCH_STATE names a copy of one (the refresh
// writes its memo), e.g. "go run ./state/internal/clibench -mappings
// 100000 -runs 1 -dir DIR -only 'mapping add'". The first refresh reads
// what the memo does not hold; the ones measured find it warm, as serve's
// do.
func BenchmarkRefresh(b *testing.B) {
	dir := os.Getenv("P2PTLS_BENCH_STATE")
	if dir == "" {
		b.Skip("set P2PTLS_BENCH_STATE to a copy of a generated state")
	}
	ctx := context.Background()
	store := state.OpenDir(dir, time.Minute)
	cfg, err := state.LoadConfig(ctx, store)
	if err != nil {
		b.Fatal(err)
	}
	m := New(Options{Store: store, Log: discard, Public: &fakeServed{listener: "web", ms: cfg.Mappings}})
	m.Refresh(ctx)
	if got := len(m.snap.Load().mappings); got != len(cfg.Mappings) {
		b.Fatalf("snapshot of %d mappings, want %d", got, len(cfg.Mappings))
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		m.Refresh(ctx)
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(len(cfg.Mappings)), "mappings")
}
