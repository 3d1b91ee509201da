package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/p2pstream/p2ptls/state/pki"
)

// scrapeMetrics GETs url (with a Bearer token unless token is empty) and
// parses the text exposition; code is the status.
func scrapeMetrics(t *testing.T, c *http.Client, url, token string) (int, map[string]*dto.MetricFamily, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, string(b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("GET %s: not the text exposition format: %v\n%s", url, err, b)
	}
	return resp.StatusCode, fams, string(b)
}

// metricValue is the value of family name's sample whose labels include
// every name=value of want; ok is false when none has them.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// TestMetricsScrape runs serve with a self-signed, a manual and a "file"
// mapping and the plain metrics listener, makes a handshake of each kind
// and a reload that fails and then one that succeeds, and checks what
// /metrics reports against the state: "cert list", the CA and server
// certificate files, and what the test did.
func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web, plain := freeAddr(t), freeAddr(t)
	files := t.TempDir()
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "self.example.test", "--self-signed", "--id", "self")
	mc, mk := writeSelfSigned(t, files, "manual", "manual.example.test")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "manual.example.test", "--manual", "--cert-file", mc, "--key-file", mk, "--id", "manual")
	fc, fk := writeSelfSigned(t, files, "file", "files.example.test")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "files.example.test", "--file", "--cert-file", fc, "--key-file", fk, "--id", "byfile")
	p.serve = startServe(t, append(p.env, "METRICS_LISTEN="+plain))
	if !strings.Contains(p.serve.output(), "http://"+plain+"/metrics") {
		t.Errorf("the start log does not name the metrics URL:\n%s", p.serve.output())
	}
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(p.must(t, "admin", "token", "create", "prom", "--output", "json")), &created); err != nil {
		t.Fatal(err)
	}
	caFile, _, srvFile, _ := mgmtFiles(p.dir)
	client := httpsClient(caPool(t, caFile))
	mgmtURL := "https://" + p.mgmt + "/metrics"

	// Without a token (or with a wrong one): 401, and nothing of the metrics.
	for _, tok := range []string{"", "not-a-token"} {
		if code, _, body := scrapeMetrics(t, client, mgmtURL, tok); code != http.StatusUnauthorized || strings.Contains(body, "p2ptls_") {
			t.Errorf("token %q: %d %s, want 401 without metrics", tok, code, body)
		}
	}

	// Handshakes: the self-signed mapping's certificate, the fallback, and
	// garbage that never completes.
	if _, err := servedSerial(web, "self.example.test"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := servedSerial(web, "nobody.example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := handshake(web, "self.example.test", nil); err == nil {
		t.Fatal("a handshake that trusts no root succeeded") // refused by the client: failed
	}

	// A reload that fails (a hand edit that does not load), then one that
	// succeeds (the edit undone).
	cfgFile := filepath.Join(p.dir, "p2ptls.toml")
	good := mustRead(t, cfgFile)
	writeRenamed(t, cfgFile, append(append([]byte{}, good...), []byte("\n[[listeners]]\nname = 5\n")...), 0o600)
	eventually(t, 15*time.Second, func() error {
		_, fams, body := scrapeMetrics(t, client, mgmtURL, created.Token)
		if v, _ := metricValue(fams, "p2ptls_reloads_total", map[string]string{"result": "failure"}); v < 1 {
			return fmt.Errorf("no failed reload yet:\n%s", body)
		}
		return nil
	})
	beforeOK := time.Now().Truncate(time.Second)
	writeRenamed(t, cfgFile, good, 0o600)
	eventually(t, 15*time.Second, func() error {
		_, fams, _ := scrapeMetrics(t, client, mgmtURL, created.Token)
		if v, _ := metricValue(fams, "p2ptls_last_reload_success_timestamp_seconds", nil); v < float64(beforeOK.Unix()) {
			return fmt.Errorf("last reload success at %v, want after %v", v, beforeOK.Unix())
		}
		return nil
	})

	// The certificates as "cert list" describes them.
	var list []struct {
		ID, Listener, Source string
		NotBefore            time.Time `json:"not_before"`
		NotAfter             time.Time `json:"not_after"`
		NextRenewalAt        time.Time `json:"next_renewal_at"`
	}
	if err := json.Unmarshal([]byte(p.must(t, "cert", "list", "--output", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("cert list: %d mappings, want 3", len(list))
	}
	ca, err := pki.ParseCertChain(mustRead(t, caFile))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.ParseCertChain(mustRead(t, srvFile))
	if err != nil {
		t.Fatal(err)
	}

	code, fams, body := scrapeMetrics(t, client, mgmtURL, created.Token)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics with the token: %d %s", code, body)
	}
	type want struct {
		name    string
		labels  map[string]string
		value   float64
		atLeast bool
	}
	var wants []want
	for _, c := range list {
		l := map[string]string{"listener": c.Listener, "mapping": c.ID, "source": c.Source}
		wants = append(wants,
			want{name: "p2ptls_cert_not_after_seconds", labels: l, value: float64(c.NotAfter.Unix())},
			want{name: "p2ptls_cert_not_before_seconds", labels: l, value: float64(c.NotBefore.Unix())},
			want{name: "p2ptls_cert_renewal_at_seconds", labels: l, value: float64(c.NextRenewalAt.Unix())})
	}
	web1 := map[string]string{"listener": "web"}
	wants = append(wants,
		want{name: "p2ptls_ca_not_after_seconds", value: float64(ca[0].NotAfter.Unix())},
		want{name: "p2ptls_management_cert_not_after_seconds", value: float64(srv[0].NotAfter.Unix())},
		want{name: "p2ptls_handshakes_total", labels: map[string]string{"listener": "web", "result": "ok"}, value: 2, atLeast: true},
		want{name: "p2ptls_handshakes_total", labels: map[string]string{"listener": "web", "result": "fallback"}, value: 2},
		want{name: "p2ptls_handshakes_total", labels: map[string]string{"listener": "web", "result": "failed"}, value: 1, atLeast: true},
		want{name: "p2ptls_handshakes_total", labels: map[string]string{"listener": "web", "result": "rejected"}, value: 0},
		want{name: "p2ptls_fallback_handshakes_total", labels: web1, value: 2},
		want{name: "p2ptls_reloads_total", labels: map[string]string{"result": "failure"}, value: 1},
		want{name: "p2ptls_reloads_total", labels: map[string]string{"result": "success"}, value: 1, atLeast: true},
		want{name: "p2ptls_build_info", labels: map[string]string{"version": buildVersion(t, p.env)}, value: 1},
	)
	for _, w := range wants {
		got, ok := metricValue(fams, w.name, w.labels)
		switch {
		case !ok:
			t.Errorf("no %s%v", w.name, w.labels)
		case w.atLeast && got < w.value, !w.atLeast && got != w.value:
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	// Prometheus's own linter reads it as valid, conventional metrics.
	lint := exec.Command(shell(t, "promtool"), "check", "metrics")
	lint.Stdin = strings.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	// No client SNI anywhere in a label.
	if strings.Contains(body, "nobody.example.test") {
		t.Error("a name a client sent is in the metrics")
	}

	// The plain listener: the same metrics without a token, over HTTP.
	pc := &http.Client{Timeout: 10 * time.Second}
	code, pfams, pbody := scrapeMetrics(t, pc, "http://"+plain+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("plain GET /metrics: %d %s", code, pbody)
	}
	for _, c := range list {
		l := map[string]string{"listener": c.Listener, "mapping": c.ID, "source": c.Source}
		if got, _ := metricValue(pfams, "p2ptls_cert_not_after_seconds", l); got != float64(c.NotAfter.Unix()) {
			t.Errorf("plain: not_after of %s = %v, want %v", c.ID, got, c.NotAfter.Unix())
		}
	}
	resp, err := pc.Get("http://" + plain + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("plain listener answers /api/v1/status with %d, want 404: it serves /metrics only", resp.StatusCode)
	}
}

// A METRICS_LISTEN that is not HOST:PORT stops serve at start with exit 2,
// before anything listens; one that is taken, with exit 1.
func TestMetricsListenRefused(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	p.must(t, "listener", "add", "web", "--addr", freeAddr(t))
	for _, tc := range []struct {
		addr string
		code int
		says string
	}{
		{"localhost", 2, "METRICS_LISTEN"},
		{"127.0.0.1:0", 2, "port 0"},
		{"127.0.0.1:http", 2, "not a number"},
	} {
		r := runServeExpectFailure(t, append(p.env, "METRICS_LISTEN="+tc.addr))
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("METRICS_LISTEN=%s: exit %d %s, want exit %d saying %q", tc.addr, r.code, r.stderr, tc.code, tc.says)
		}
	}
	// Taken: by the management listener's own address.
	r := runServeExpectFailure(t, append(p.env, "METRICS_LISTEN="+p.mgmt))
	if r.code != 1 || !strings.Contains(r.stderr, "METRICS_LISTEN") {
		t.Errorf("METRICS_LISTEN taken: exit %d %s, want exit 1 naming METRICS_LISTEN", r.code, r.stderr)
	}
}

// buildVersion is what "p2ptls version" says: "dev", or the version the
// toolchain stamped from the checkout (a clean clone gets a pseudo-version).
func buildVersion(t *testing.T, env []string) string {
	t.Helper()
	r := p2ptls(t, env, "version", "--output", "json")
	var v struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version == "" {
		t.Fatalf("p2ptls version: %v: %q", err, r.stdout)
	}
	return v.Version
}
