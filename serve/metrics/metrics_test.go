package metrics

import (
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/p2pstream/p2ptls/serve/public"
	"github.com/p2pstream/p2ptls/state"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

var discard = slog.New(slog.DiscardHandler)

// fakeServed serves a fixed list of mappings and reload counts.
type fakeServed struct {
	listener string
	ms       []state.Mapping
	reloads  public.Reloads
}

func (f *fakeServed) Metrics(fn func(string, state.Mapping)) []public.ListenerCounts {
	for _, m := range f.ms {
		fn(f.listener, m)
	}
	return nil
}

func (f *fakeServed) Reloads() public.Reloads { return f.reloads }

// writeMapping stores a self-signed certificate valid from notBefore for
// days, and meta.toml when meta is not empty.
func writeMapping(t *testing.T, dir, id string, notBefore time.Time, days int, meta string) *x509.Certificate {
	t.Helper()
	md := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(id)))
	if err := os.MkdirAll(md, 0o700); err != nil {
		t.Fatal(err)
	}
	if meta != "" {
		if err := os.WriteFile(filepath.Join(md, mappings.MetaFileName), []byte(meta), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if days == 0 {
		return nil
	}
	kp, err := pki.SelfSigned(pki.ParseNames([]string{id + ".example.com"}), notBefore, time.Duration(days)*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{mappings.CertFileName: kp.CertPEM, mappings.KeyFileName: kp.KeyPEM} {
		if err := os.WriteFile(filepath.Join(md, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kp.Cert
}

// scrape gets h's text exposition and parses it.
func scrape(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// series is family name's samples by their labels (name=value, joined by
// commas, in the order given), as values.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	f, ok := fams[name]
	if !ok {
		return nil
	}
	for _, m := range f.Metric {
		var key []string
		for _, l := range labels {
			for _, lp := range m.Label {
				if lp.GetName() == l {
					key = append(key, l+"="+lp.GetValue())
				}
			}
		}
		var v float64
		switch {
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Untyped != nil:
			v = m.Untyped.GetValue()
		}
		out[strings.Join(key, ",")] = v
	}
	return out
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

// Every series comes from the state as "cert list" describes it: the
// validity of usable certificates only, the renewal time by pki's rule or
// ACME's own schedule, the last attempt's outcome from meta.toml, the
// renewal loop's failures, the CA, the management certificate and the
// reloads.
func TestScrapeMatchesState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	store := state.OpenDir(dir, time.Second)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	if err := statemgmt.Init(ctx, store, pki.ParseNames([]string{"localhost"}), now); err != nil {
		t.Fatal(err)
	}
	_, ca, err := statemgmt.CACertificate(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	next := now.Add(48 * time.Hour).UTC()
	self := writeMapping(t, dir, "self", now.Add(-time.Hour), 30, "")
	short := writeMapping(t, dir, "short", now.Add(-time.Hour), 6, "")
	acmeOK := writeMapping(t, dir, "acme-ok", now.Add(-time.Hour), 90, "next_renewal_at = "+next.Format(time.RFC3339)+"\n")
	acmeBad := writeMapping(t, dir, "acme-bad", now.Add(-time.Hour), 90, "last_error = \"the ACME server said no\"\nattempts = 2\n"+
		"backoff_reason = \"rate_limited\"\nretry_at = "+now.Add(time.Hour).UTC().Format(time.RFC3339)+"\n")
	// A back-off that has ended is not counted.
	writeMapping(t, dir, "pending", now, 0, "last_error = \"no\"\nbackoff_reason = \"account_paused\"\nretry_at = "+now.Add(-time.Minute).UTC().Format(time.RFC3339)+"\n")
	writeMapping(t, dir, "nokey", now, 0, "")
	// A certificate without its key is not usable: no validity series.
	writeMapping(t, dir, "tmp", now, 30, "")
	if err := os.Rename(filepath.Join(dir, filepath.FromSlash(mappings.MappingDir("tmp")), mappings.CertFileName),
		filepath.Join(dir, filepath.FromSlash(mappings.MappingDir("nokey")), mappings.CertFileName)); err != nil {
		t.Fatal(err)
	}
	lastOK := now.Add(-time.Minute)
	fake := &fakeServed{listener: "web", reloads: public.Reloads{OK: 3, Failed: 2, LastSuccessAt: lastOK}, ms: []state.Mapping{
		{ID: "self", Source: state.SourceSelfSigned},
		{ID: "short", Source: state.SourceManual},
		{ID: "acme-ok", Source: state.SourceACME},
		{ID: "acme-bad", Source: state.SourceACME},
		{ID: "pending", Source: state.SourceACME},
		{ID: "nokey", Source: state.SourceManual},
	}}
	mgmtCert := self
	m := New(Options{Store: store, Log: discard, Public: fake, Version: "v1.2.3", ManagementCert: func() *x509.Certificate { return mgmtCert }})
	m.ObserveRenewal("acme-bad", errors.New("no"))
	m.ObserveRenewal("acme-bad", errors.New("no again"))
	m.ObserveRenewal("acme-ok", nil)
	m.Refresh(ctx)
	fams := scrape(t, m.Handler())

	key := func(id, source string) string { return "listener=web,mapping=" + id + ",source=" + source }
	lbl := []string{"listener", "mapping", "source"}
	tests := []struct {
		name string
		got  map[string]float64
		want map[string]float64
	}{
		{"p2ptls_cert_not_after_seconds", series(fams, "p2ptls_cert_not_after_seconds", lbl...), map[string]float64{
			key("self", "self-signed"): unix(self.NotAfter), key("short", "manual"): unix(short.NotAfter),
			key("acme-ok", "acme"): unix(acmeOK.NotAfter), key("acme-bad", "acme"): unix(acmeBad.NotAfter),
		}},
		{"p2ptls_cert_not_before_seconds", series(fams, "p2ptls_cert_not_before_seconds", lbl...), map[string]float64{
			key("self", "self-signed"): unix(self.NotBefore), key("short", "manual"): unix(short.NotBefore),
			key("acme-ok", "acme"): unix(acmeOK.NotBefore), key("acme-bad", "acme"): unix(acmeBad.NotBefore),
		}},
		{"p2ptls_cert_renewal_at_seconds", series(fams, "p2ptls_cert_renewal_at_seconds", lbl...), map[string]float64{
			key("self", "self-signed"): unix(pki.RenewalTime(self)),
			key("short", "manual"):     unix(pki.RenewalTime(short)), // half of a 6-day lifetime
			key("acme-ok", "acme"):     unix(next),
			key("acme-bad", "acme"):    unix(pki.RenewalTime(acmeBad)), // no next_renewal_at in its meta
		}},
		{"p2ptls_cert_last_renewal_success", series(fams, "p2ptls_cert_last_renewal_success", lbl...), map[string]float64{
			key("acme-ok", "acme"): 1, key("acme-bad", "acme"): 0, key("pending", "acme"): 0,
		}},
		{"p2ptls_cert_renewal_failures_total", series(fams, "p2ptls_cert_renewal_failures_total", lbl...), map[string]float64{
			key("acme-ok", "acme"): 0, key("acme-bad", "acme"): 2, key("pending", "acme"): 0,
		}},
		{"p2ptls_acme_backoff_mappings", series(fams, "p2ptls_acme_backoff_mappings", "reason"), map[string]float64{
			"reason=rate_limited": 1, "reason=account_paused": 0, "reason=failed": 0,
		}},
		{"p2ptls_reloads_total", series(fams, "p2ptls_reloads_total", "result"), map[string]float64{"result=success": 3, "result=failure": 2}},
		{"p2ptls_last_reload_success_timestamp_seconds", series(fams, "p2ptls_last_reload_success_timestamp_seconds"), map[string]float64{"": unix(lastOK)}},
		{"p2ptls_ca_not_after_seconds", series(fams, "p2ptls_ca_not_after_seconds"), map[string]float64{"": unix(ca.NotAfter)}},
		{"p2ptls_management_cert_not_after_seconds", series(fams, "p2ptls_management_cert_not_after_seconds"), map[string]float64{"": unix(self.NotAfter)}},
		{"p2ptls_build_info", series(fams, "p2ptls_build_info", "version", "goversion"), map[string]float64{"version=v1.2.3,goversion=" + runtime.Version(): 1}},
	}
	for _, tc := range tests {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.name, tc.got, tc.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	for _, f := range []string{"p2ptls_cert_renewal_failures_total", "p2ptls_reloads_total"} {
		if got := fams[f].GetType(); got != dto.MetricType_COUNTER {
			t.Errorf("%s is a %v, want a counter", f, got)
		}
	}
	if got := fams["p2ptls_cert_not_after_seconds"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("p2ptls_cert_not_after_seconds is a %v, want a gauge", got)
	}

	// Mode off: no management certificate, and the CA left in the state
	// is not in use: no series.
	mgmtCert = nil
	off := New(Options{Store: store, Log: discard, Public: fake, ManagementCert: func() *x509.Certificate { return mgmtCert },
		Management: statemgmt.Settings{Mode: statemgmt.ModeOff}})
	off.Refresh(ctx)
	fams = scrape(t, off.Handler())
	for _, name := range []string{"p2ptls_management_cert_not_after_seconds", "p2ptls_ca_not_after_seconds"} {
		if got := series(fams, name); got != nil {
			t.Errorf("mode off: %s %v, want no series", name, got)
		}
	}
}

// A scrape reads the snapshot: a certificate renewed on disk shows after
// the next refresh, not before, and a refresh that the summaries could
// not make keeps the previous snapshot.
func TestScrapeReadsTheSnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	store := state.OpenDir(dir, time.Second)
	now := time.Now().Truncate(time.Second)
	old := writeMapping(t, dir, "app", now.Add(-24*time.Hour), 30, "")
	fake := &fakeServed{listener: "web", ms: []state.Mapping{{ID: "app", Source: state.SourceManual}}}
	m := New(Options{Store: store, Log: discard, Public: fake})
	key := "listener=web,mapping=app,source=manual"
	notAfter := func() float64 {
		return series(scrape(t, m.Handler()), "p2ptls_cert_not_after_seconds", "listener", "mapping", "source")[key]
	}
	// Without Run nothing builds the snapshot: a first scrape waits for it
	// until the scraper gives up, then has no mapping series.
	gaveUp, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil).WithContext(gaveUp))
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "p2ptls_cert_not_after_seconds{") {
		t.Errorf("before the first refresh: %d, want 200 without mapping series:\n%s", rec.Code, rec.Body)
	}
	m.Refresh(context.Background())
	if got := notAfter(); got != unix(old.NotAfter) {
		t.Errorf("not_after %v, want %v", got, unix(old.NotAfter))
	}
	renewed := writeMapping(t, dir, "app", now, 60, "")
	if got := notAfter(); got != unix(old.NotAfter) {
		t.Errorf("before the refresh: not_after %v, want the snapshot's %v", got, unix(old.NotAfter))
	}
	m.Refresh(context.Background())
	if got := notAfter(); got != unix(renewed.NotAfter) {
		t.Errorf("after the refresh: not_after %v, want the renewed %v", got, unix(renewed.NotAfter))
	}
}

// Run refreshes after serve reloads (once the gap since the last refresh
// has passed), without waiting for refreshEvery.
func TestRunRefreshesAfterReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	store := state.OpenDir(dir, time.Second)
	now := time.Now().Truncate(time.Second)
	writeMapping(t, dir, "a", now, 30, "")
	writeMapping(t, dir, "b", now, 30, "")
	fake := &reloadingServed{fakeServed: fakeServed{listener: "web", ms: []state.Mapping{{ID: "a", Source: state.SourceManual}}}}
	m := New(Options{Store: store, Log: discard, Public: fake})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	count := func() int {
		return len(series(scrape(t, m.Handler()), "p2ptls_cert_not_after_seconds", "mapping"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for count() != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := count(); got != 1 {
		t.Fatalf("after start: %d mappings, want 1", got)
	}
	fake.add(state.Mapping{ID: "b", Source: state.SourceManual})
	for count() != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := count(); got != 2 {
		t.Errorf("after a reload: %d mappings, want 2 (refreshEvery is %v, far beyond this wait)", got, refreshEvery)
	}
}

// A serve nobody scrapes builds no snapshot of the mappings (at 100k a
// build is 0.7 s of CPU and 145 MB of garbage); the first scrape asks for
// one and waits until it is there.
func TestNoSnapshotUntilTheFirstScrape(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	store := state.OpenDir(dir, time.Second)
	writeMapping(t, dir, "a", time.Now().Truncate(time.Second), 30, "")
	fake := &fakeServed{listener: "web", ms: []state.Mapping{{ID: "a", Source: state.SourceManual}}}
	m := New(Options{Store: store, Log: discard, Public: fake})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond) // Run's first tick would have come and gone
	if m.snap.Load() != nil {
		t.Fatal("Run built a snapshot before anyone scraped")
	}
	if got := len(series(scrape(t, m.Handler()), "p2ptls_cert_not_after_seconds", "mapping")); got != 1 {
		t.Errorf("the first scrape has %d mapping series, want 1", got)
	}
}

// reloadingServed is fakeServed whose mappings change with a reload.
type reloadingServed struct {
	mu sync.Mutex
	fakeServed
}

func (f *reloadingServed) add(mp state.Mapping) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ms = append(f.ms, mp)
	f.reloads.OK++
}

func (f *reloadingServed) Metrics(fn func(string, state.Mapping)) []public.ListenerCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fakeServed.Metrics(fn)
}

func (f *reloadingServed) Reloads() public.Reloads {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

// A scraper that asks for gzip gets the same metrics compressed; one that
// refuses it (q=0) or does not ask gets them plain.
func TestScrapeGzip(t *testing.T) {
	h := benchMetrics(50).Handler()
	for _, tc := range []struct {
		accept string
		gzip   bool
	}{
		{"gzip", true}, {"deflate, gzip;q=1.0, *;q=0.5", true}, {"GZIP", true},
		{"", false}, {"gzip;q=0", false}, {"deflate", false}, {"gzip; q=0.0", false},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept-Encoding", tc.accept)
		h.ServeHTTP(rec, req)
		var body io.Reader = rec.Body
		if got := rec.Header().Get("Content-Encoding") == "gzip"; got != tc.gzip {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", tc.accept, got, tc.gzip)
			continue
		}
		if tc.gzip {
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatalf("Accept-Encoding %q: %v", tc.accept, err)
			}
			body = zr
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(body)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: %v", tc.accept, err)
		}
		if n := len(fams["p2ptls_cert_not_after_seconds"].GetMetric()); n != 50 {
			t.Errorf("Accept-Encoding %q: %d mappings, want 50", tc.accept, n)
		}
	}
}

// Label values are escaped as the text format wants: a listener name
// from a hand-edited p2ptls.toml must not break the exposition.
func TestScrapeEscapesLabels(t *testing.T) {
	m := benchMetrics(0)
	odd := []string{`back\slash`, `qu"ote`, "new\nline", "plain-name", `all\"` + "\n"}
	b := newBuilder(0)
	for i, l := range odd {
		b.add(l, "m"+strconv.Itoa(i), "manual", sample{cert: true, notAfter: int64(i)})
	}
	m.publish(b.snap)
	got := series(scrape(t, m.Handler()), "p2ptls_cert_not_after_seconds", "listener", "mapping")
	for i, l := range odd {
		if v, ok := got["listener="+l+",mapping=m"+strconv.Itoa(i)]; !ok || v != float64(i) {
			t.Errorf("listener %q: %v %v, want %d (all: %v)", l, v, ok, i, got)
		}
	}
}

// Beyond maxScrapes at once, a scrape is answered 503 rather than queued.
func TestScrapesBounded(t *testing.T) {
	m := benchMetrics(1)
	for range maxScrapes {
		m.scrapes <- struct{}{}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("with %d scrapes running: %d, want 503", maxScrapes, rec.Code)
	}
	<-m.scrapes
	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("with a slot free: %d, want 200", rec.Code)
	}
}
