package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/pki"
)

// TestHealthcheckAgainstRunningServe runs 'p2ptls healthcheck' as the
// image's HEALTHCHECK does, with serve's own environment: it passes while
// serve runs (even while another process holds the state lock: it takes
// none), fails with exit 1 naming the problem when serve is down or another
// CA signed its certificate, refuses bad input with exit 2, and never writes
// to the state.
func TestHealthcheckAgainstRunningServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr}
	p := startServe(t, env)
	caFile, _, _, _ := mgmtFiles(dir)
	certs, err := pki.ParseCertChain(mustRead(t, caFile))
	if err != nil {
		t.Fatal(err)
	}
	fp := pki.Fingerprint(certs[0])

	unlock := holdLock(t, dir)
	r := p2ptls(t, env, "healthcheck", "--lock-timeout", "100ms")
	if r.code != 0 || !strings.Contains(r.stdout, "serve is healthy: https://"+addr+"/healthz") || !strings.Contains(r.stdout, fp) {
		t.Errorf("healthcheck while the state is locked: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if r := p2ptls(t, env, "healthcheck", "--quiet"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("healthcheck --quiet: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// MANAGEMENT_LISTEN on every interface is checked on loopback.
	_, port, _ := strings.Cut(addr, ":")
	r = p2ptls(t, []string{"CONFIG_DIR=" + dir}, "healthcheck", "--listen", ":"+port, "--output", "json")
	var res struct {
		URL        string `json:"url"`
		Mode       string `json:"mode"`
		Verified   string `json:"verified_with"`
		TLSVersion string `json:"tls_version"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
		t.Fatalf("healthcheck --output json: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if res.URL != "https://127.0.0.1:"+port+"/healthz" || res.Mode != "auto" || !strings.Contains(res.Verified, fp) || res.TLSVersion != "TLS 1.3" {
		t.Errorf("healthcheck --output json = %s", r.stdout)
	}

	// Another state's CA, as when CONFIG_DIR points elsewhere.
	other := filepath.Join(t.TempDir(), "other")
	if r := p2ptls(t, []string{"CONFIG_DIR=" + other}, "ca", "init"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = p2ptls(t, []string{"CONFIG_DIR=" + other, "MANAGEMENT_LISTEN=" + addr}, "healthcheck")
	if r.code != 1 || !strings.Contains(r.stderr, "not signed by the CA this check trusts") || !strings.Contains(r.stderr, "hint:") {
		t.Errorf("wrong CA: exit %d, %s", r.code, r.stderr)
	}

	// Bad input: exit 2, before anything is dialled.
	for _, args := range [][]string{
		{"healthcheck", "--listen", "nope"},
		{"healthcheck", "--listen", addr, "--tls-mode", "off"},
		{"healthcheck", "--listen", addr, "--timeout", "0s"},
		{"healthcheck", "--listen", addr, "extra"},
	} {
		if r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, args...); r.code != 2 || !strings.Contains(r.stderr, "hint:") {
			t.Errorf("%v: exit %d, want 2; %s", args, r.code, r.stderr)
		}
	}

	// serve stopped: unhealthy, and the check leaves the state as it was.
	p.stop(t)
	before := snapshot(t, dir)
	r = p2ptls(t, env, "healthcheck", "--timeout", "2s")
	if r.code != 1 || !strings.Contains(r.stderr, "serve is not answering on MANAGEMENT_LISTEN "+addr) || !strings.Contains(r.stderr, "start 'p2ptls serve'") {
		t.Errorf("serve stopped: exit %d, %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, before, snapshot(t, dir))
}

// TestHealthcheckModeOff: with management TLS off the check speaks plain
// HTTP, as serve does, and only with MANAGEMENT_ALLOW_INSECURE_HTTP=true.
func TestHealthcheckModeOff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr, "MANAGEMENT_TLS_MODE=off", "MANAGEMENT_ALLOW_INSECURE_HTTP=true"}
	startServe(t, env)
	if r := p2ptls(t, env, "healthcheck"); r.code != 0 || !strings.Contains(r.stdout, "http://"+addr+"/healthz answered 200 OK over plain HTTP") {
		t.Errorf("mode off: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r := p2ptls(t, env[:3], "healthcheck")
	if r.code != 2 || !strings.Contains(r.stderr, "requires MANAGEMENT_ALLOW_INSECURE_HTTP=true") {
		t.Errorf("mode off without the allow flag: exit %d, %s", r.code, r.stderr)
	}
	// The default mode against this plain-HTTP serve (no CA in the state).
	r = p2ptls(t, env[:2], "healthcheck")
	if r.code != 1 || !strings.Contains(r.stderr, "has no management CA") {
		t.Errorf("mode auto against a mode-off state: exit %d, %s", r.code, r.stderr)
	}
}
