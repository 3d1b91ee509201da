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

// doctorJSON is what "doctor --output json" prints.
type doctorJSON struct {
	OK     *bool `json:"ok"`
	Checks []struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Hint    string `json:"hint"`
	} `json:"checks"`
}

// runDoctor runs doctor with JSON output and decodes the report, which is
// printed whatever the exit code.
func runDoctor(t *testing.T, env []string, args ...string) (doctorJSON, result) {
	t.Helper()
	r := p2ptls(t, env, append([]string{"doctor", "--output", "json"}, args...)...)
	var doc doctorJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.OK == nil {
		t.Fatalf("doctor %v: exit %d, stdout is not the report (%v):\n%s\nstderr: %s", args, r.code, err, r.stdout, r.stderr)
	}
	return doc, r
}

// statuses maps check ids to statuses.
func (d doctorJSON) statuses() map[string]string {
	m := map[string]string{}
	for _, c := range d.Checks {
		m[c.ID] = c.Status
	}
	return m
}

// check returns the check with id.
func (d doctorJSON) check(t *testing.T, id string) (status, message, hint string) {
	t.Helper()
	for _, c := range d.Checks {
		if c.ID == id {
			return c.Status, c.Message, c.Hint
		}
	}
	t.Fatalf("the report has no check %s", id)
	return "", "", ""
}

// TestDoctorBrokenState: a deliberately broken state directory fails with
// every mistake named by its check.
func TestDoctorBrokenState(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + dir}
	for _, args := range [][]string{
		{"listener", "add", "web", "--addr", freeAddr(t)}, // no HTTP address
		{"ca", "init", "--public-url", "https://localhost:8443"},
	} {
		if r := p2ptls(t, env, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	// A hand-written record that mapping add would refuse: a wildcard
	// with HTTP-01.
	cfgFile := filepath.Join(dir, "mappings", "wild.toml")
	if err := os.MkdirAll(filepath.Dir(cfgFile), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := `id = "wild"
listener = "web"
hosts = ["*.example.com"]
source = "acme"
challenge = "http-01"
`
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "certs", "management", "server.key")
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	env = append(env, "MANAGEMENT_PUBLIC_URL=https://localhost:8443", "MANAGEMENT_TLS_EXTRA_HOSTS=mgmt2.example.com")

	doc, r := runDoctor(t, env)
	if r.code != 1 || *doc.OK {
		t.Errorf("exit %d, ok %v; want 1 and false", r.code, *doc.OK)
	}
	got := doc.statuses()
	for id, status := range map[string]string{
		"state.config":                "fail",
		"state.permissions":           "fail",
		"management.extra_hosts":      "fail",
		"mappings.wildcard_challenge": "fail",
		"mappings.challenge_ports":    "fail",
		"management.public_url":       "warn",
		"management.ca":               "ok",
	} {
		if got[id] != status {
			t.Errorf("%s: %q, want %q", id, got[id], status)
		}
	}
	_, msg, hint := doc.check(t, "state.permissions")
	if !strings.Contains(msg, "certs/management/server.key (0644)") || !strings.Contains(hint, "chmod 600 "+keyFile) {
		t.Errorf("state.permissions: %q / %q", msg, hint)
	}
	if _, msg, _ := doc.check(t, "mappings.wildcard_challenge"); !strings.Contains(msg, "mapping wild") {
		t.Errorf("mappings.wildcard_challenge does not name the mapping: %q", msg)
	}
	if _, msg, hint := doc.check(t, "management.extra_hosts"); !strings.Contains(msg, "mgmt2.example.com") || !strings.Contains(hint, "ca renew-server") {
		t.Errorf("management.extra_hosts: %q / %q", msg, hint)
	}
	for _, c := range doc.Checks {
		if c.Status != "ok" && c.Hint == "" {
			t.Errorf("%s is %s without a hint", c.ID, c.Status)
		}
	}
	if !strings.HasPrefix(r.stderr, "p2ptls: error: ") || !strings.Contains(r.stderr, "checks failed: ") || !strings.Contains(r.stderr, "mappings.wildcard_challenge") {
		t.Errorf("stderr: %s", r.stderr)
	}

	// The table for people, global flags after the command as before it.
	tr := p2ptls(t, env, "doctor")
	if tr.code != 1 || !strings.Contains(tr.stdout, "FAIL") || !strings.Contains(tr.stdout, "mappings.wildcard_challenge") ||
		!strings.Contains(tr.stdout, "hint: ") || !strings.Contains(tr.stdout, "failures") {
		t.Errorf("table: exit %d\n%s\n%s", tr.code, tr.stdout, tr.stderr)
	}
	// --quiet prints only what is not ok.
	if q := p2ptls(t, env, "--quiet", "doctor"); q.code != 1 || strings.Contains(q.stdout, " ok ") || !strings.Contains(q.stdout, "FAIL") {
		t.Errorf("--quiet: exit %d\n%s", q.code, q.stdout)
	}
	// Doctor only reads.
	assertSameSnapshot(t, before, snapshot(t, dir))
}

// healthyState is a state doctor finds nothing wrong with: a listener, a
// self-signed mapping, a CA whose server certificate covers the public URL
// and a backup of it.
func healthyState(t *testing.T) (dir string, env []string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "state")
	env = []string{"CONFIG_DIR=" + dir, "MANAGEMENT_PUBLIC_URL=https://192.0.2.10:8443"}
	for _, args := range [][]string{
		{"listener", "add", "web", "--addr", freeAddr(t), "--http-addr", freeAddr(t)},
		{"mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed"},
		{"ca", "init"},
		{"backup", "--out", filepath.Join(t.TempDir(), "backup.tar.gz")},
	} {
		if r := p2ptls(t, env, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	return dir, env
}

func TestDoctorHealthyStateAndStrict(t *testing.T) {
	t.Parallel()
	_, env := healthyState(t)
	doc, r := runDoctor(t, env, "--strict")
	if r.code != 0 || !*doc.OK || r.stderr != "" {
		t.Errorf("healthy --strict: exit %d, ok %v, stderr %q", r.code, *doc.OK, r.stderr)
	}
	for _, c := range doc.Checks {
		if c.Status != "ok" {
			t.Errorf("healthy: %s is %s: %s", c.ID, c.Status, c.Message)
		}
	}
	if tr := p2ptls(t, env, "doctor"); tr.code != 0 || !strings.Contains(tr.stdout, "0 warnings, 0 failures") {
		t.Errorf("table: exit %d\n%s\n%s", tr.code, tr.stdout, tr.stderr)
	}

	// Without MANAGEMENT_PUBLIC_URL it warns: exit 0, and 1 with --strict.
	noURL := []string{env[0]}
	doc, r = runDoctor(t, noURL)
	if r.code != 0 || !*doc.OK || doc.statuses()["management.public_url"] != "warn" {
		t.Errorf("a warning: exit %d, ok %v, %v", r.code, *doc.OK, doc.statuses())
	}
	doc, r = runDoctor(t, noURL, "--strict")
	if r.code != 1 || *doc.OK || !strings.Contains(r.stderr, "1 check failed or warned (--strict): management.public_url") {
		t.Errorf("a warning with --strict: exit %d, ok %v, stderr %s", r.code, *doc.OK, r.stderr)
	}
	// Bad input is still exit 2.
	if r := p2ptls(t, env, "doctor", "extra"); r.code != 2 {
		t.Errorf("doctor extra: exit %d", r.code)
	}
}

// TestDoctorRunningServe: doctor fails listeners.fallback while a running
// serve has fallback hits, naming the SNI names; --network connects to
// management as an agent does.
func TestDoctorRunningServe(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed")
	p.serve = startServe(t, p.env)
	eventually(t, 10*time.Second, func() error { _, err := servedSerial(web, "app.example.test"); return err })

	env := append(append([]string{}, p.env...), "MANAGEMENT_PUBLIC_URL=https://127.0.0.1:"+strings.Split(p.mgmt, ":")[1])
	doc, _ := runDoctor(t, env, "--network")
	if s := doc.statuses(); s["listeners.fallback"] != "ok" || s["listeners.serving"] != "ok" || s["management.network"] != "ok" {
		t.Errorf("before any fallback hit: %v", doc.Checks)
	}
	// A URL where nothing listens: --network fails with agent check's diagnosis.
	down := append(append([]string{}, p.env...), "MANAGEMENT_PUBLIC_URL=https://"+freeAddr(t))
	doc, r := runDoctor(t, down, "--network")
	if status, msg, hint := doc.check(t, "management.network"); r.code != 1 || status != "fail" || !strings.Contains(msg, "not reachable") || hint == "" {
		t.Errorf("--network to nothing: exit %d, %s %q %q", r.code, status, msg, hint)
	}

	if _, err := servedSerial(web, "unmapped.example.test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if hits := p.status(t).Listeners[0].FallbackHits; hits["unmapped.example.test"] != 1 {
			return fmt.Errorf("fallback_hits = %v", hits)
		}
		return nil
	})
	doc, r = runDoctor(t, p.env)
	status, msg, hint := doc.check(t, "listeners.fallback")
	if r.code != 1 || status != "fail" || !strings.Contains(msg, "unmapped.example.test=1") || !strings.Contains(msg, "listener web") || !strings.Contains(hint, "mapping add --listener web") {
		t.Errorf("with a fallback hit: exit %d, %s %q %q", r.code, status, msg, hint)
	}
	if !strings.Contains(r.stderr, "listeners.fallback") {
		t.Errorf("stderr does not name the failing check: %s", r.stderr)
	}

	// Once serve stopped, gracefully here, its hits are history: a warning,
	// and status shows them on the closed listener.
	p.serve.stop(t)
	st := p.status(t)
	if l := st.Listeners[0]; st.ServeRunning || l.Listening || l.FallbackHits["unmapped.example.test"] != 1 {
		t.Errorf("status after a graceful stop: serve_running %v, listening %v, fallback_hits %v", st.ServeRunning, l.Listening, l.FallbackHits)
	}
	doc, _ = runDoctor(t, p.env)
	if status, msg, _ := doc.check(t, "listeners.fallback"); status != "warn" || !strings.Contains(msg, "the last serve") || !strings.Contains(msg, "unmapped.example.test=1") {
		t.Errorf("after serve stopped: %s %q", status, msg)
	}
}

// A management server certificate that does not chain to the published CA
// (here another installation's, copied over by hand) fails
// management.chain, and doctor exits 1 without touching the state.
func TestDoctorChainNotFromThePublishedCA(t *testing.T) {
	t.Parallel()
	dir, other := filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "other")
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_PUBLIC_URL=https://192.0.2.10:8443"}
	for _, d := range []string{dir, other} {
		if r := p2ptls(t, []string{"CONFIG_DIR=" + d, "MANAGEMENT_PUBLIC_URL=https://192.0.2.10:8443"}, "ca", "init"); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	doc, _ := runDoctor(t, env)
	if status, msg, _ := doc.check(t, "management.chain"); status != "ok" || !strings.Contains(msg, "verifies with the published CA") {
		t.Fatalf("management.chain: %s %q", status, msg)
	}
	_, _, srv, srvKey := mgmtFiles(dir)
	_, _, otherSrv, otherKey := mgmtFiles(other)
	for src, dst := range map[string]string{otherSrv: srv, otherKey: srvKey} {
		if err := os.WriteFile(dst, mustRead(t, src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := stateSnapshot(t, dir)
	doc, r := runDoctor(t, env)
	status, msg, hint := doc.check(t, "management.chain")
	if r.code != 1 || status != "fail" || !strings.Contains(msg, "does not verify with the CA management publishes for agents") || !strings.Contains(hint, "ca renew-server") {
		t.Errorf("doctor: exit %d, management.chain %s %q %q", r.code, status, msg, hint)
	}
	assertSameSnapshot(t, before, stateSnapshot(t, dir))
}
