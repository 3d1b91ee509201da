package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A mapping whose certificate is missing does not hide the wildcard that
// covers its host: the wildcard's certificate is served, and status (table
// and JSON) names the wildcard mapping serving the host meanwhile.
func TestStatusServedByWildcard(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "dns.example.test", "--self-signed", "--id", "dns")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "*.example.test", "--self-signed", "--id", "wild")
	if err := os.Remove(filepath.Join(p.dir, "certs", "public", "dns", "cert.pem")); err != nil {
		t.Fatal(err)
	}
	p.serve = startServe(t, p.env)
	wild := fileSerial(t, filepath.Join(p.dir, "certs", "public", "wild", "cert.pem"))
	if err := serves(web, "dns.example.test", wild); err != nil {
		t.Fatalf("a certificate-less exact mapping hid its wildcard: %v", err)
	}
	eventually(t, 10*time.Second, func() error {
		var st struct {
			Panics    *int64 `json:"panics"`
			Listeners []struct {
				ServedByWildcard map[string]string `json:"served_by_wildcard"`
			} `json:"listeners"`
		}
		if err := json.Unmarshal([]byte(p.must(t, "status", "--output", "json")), &st); err != nil {
			return err
		}
		if st.Panics == nil || *st.Panics != 0 || len(st.Listeners) != 1 || st.Listeners[0].ServedByWildcard["dns.example.test"] != "wild" {
			return fmt.Errorf("status: panics %v, listeners %+v", st.Panics, st.Listeners)
		}
		return nil
	})
	out := p.must(t, "status")
	for _, want := range []string{"SERVED BY WILDCARD", "dns.example.test=wild", "panics recovered: 0", "LAST RELOAD", "RESULT", " ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
}

// Panics serve recovered from are shown by status, with a warning, and the
// last reload with its time, count and error.
func TestStatusShowsPanicsAndTheLastReload(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What a serve that recovered from 3 panics reports; the test's own
	// pid stands in for a running serve.
	host, _ := os.Hostname()
	st := fmt.Sprintf(`{"pid":%d,"host":%q,"panics":3,"last_reload_at":"2026-11-30T10:00:00Z","reloads":4,`+
		`"last_reload_error":"p2ptls.toml line 3: bad listener","listeners":[{"name":"web","addr":"127.0.0.1:1","listening":true,`+
		`"served_by_wildcard":{"a.example.test":"wild"},"fallback_hits":{}}]}`, os.Getpid(), host)
	if err := os.WriteFile(filepath.Join(dir, "run", "status.json"), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}
	r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "panics recovered: 3") || !strings.Contains(r.stderr, "recovered from 3 panic(s)") ||
		!strings.Contains(r.stdout, "a.example.test=wild") || !strings.Contains(r.stdout, "2026-11-30T10:00:00Z") ||
		!strings.Contains(r.stdout, "failed: p2ptls.toml line 3: bad listener") {
		t.Errorf("status: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
